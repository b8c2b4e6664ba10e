ALTER TABLE `server_settings` ADD `former_jwks_max_age_seconds` integer;--> statement-breakpoint
ALTER TABLE `server_settings` ADD `jwks_max_age_lowered_at` integer;