CREATE TABLE `audit_events` (
	`id` text PRIMARY KEY NOT NULL,
	`at` integer NOT NULL,
	`actor` text NOT NULL,
	`event` text NOT NULL,
	`app_id` text,
	`sub` text,
	`session_id` text,
	`kid` text,
	`client_address` text,
	`detail` text
);
--> statement-breakpoint
CREATE INDEX `audit_events_at_idx` ON `audit_events` (`at`);--> statement-breakpoint
CREATE INDEX `audit_events_app_idx` ON `audit_events` (`app_id`,`at`);--> statement-breakpoint
CREATE INDEX `refresh_tokens_exp_idx` ON `refresh_tokens` (`exp`);--> statement-breakpoint
CREATE INDEX `sessions_expires_idx` ON `sessions` (`expires_at`);