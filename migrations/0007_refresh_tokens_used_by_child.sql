PRAGMA foreign_keys=OFF;--> statement-breakpoint
CREATE TABLE `__new_refresh_tokens` (
	`jid` text PRIMARY KEY NOT NULL,
	`session_id` text NOT NULL,
	`parent_jid` text,
	`iat` integer NOT NULL,
	`nbf` integer NOT NULL,
	`exp` integer NOT NULL,
	`ip` text NOT NULL,
	`useragent` text NOT NULL,
	`issued_at` integer NOT NULL,
	`token_sha256` blob
);
--> statement-breakpoint
INSERT INTO `__new_refresh_tokens`("jid", "session_id", "parent_jid", "iat", "nbf", "exp", "ip", "useragent", "issued_at", "token_sha256") SELECT "jid", "session_id", "parent_jid", "iat", "nbf", "exp", "ip", "useragent", "issued_at", "token_sha256" FROM `refresh_tokens`;--> statement-breakpoint
DROP TABLE `refresh_tokens`;--> statement-breakpoint
ALTER TABLE `__new_refresh_tokens` RENAME TO `refresh_tokens`;--> statement-breakpoint
PRAGMA foreign_keys=ON;--> statement-breakpoint
CREATE UNIQUE INDEX `refresh_tokens_parent_jid_unique` ON `refresh_tokens` (`parent_jid`);--> statement-breakpoint
CREATE INDEX `refresh_tokens_exp_idx` ON `refresh_tokens` (`exp`);