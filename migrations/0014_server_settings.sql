CREATE TABLE `server_settings` (
	`id` integer PRIMARY KEY NOT NULL,
	`jwks_max_age_seconds` integer NOT NULL,
	`recorded_at` integer NOT NULL
);
