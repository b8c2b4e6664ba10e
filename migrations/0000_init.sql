CREATE TABLE `apps` (
	`app_id` text PRIMARY KEY NOT NULL,
	`app_key_hash` text NOT NULL,
	`previous_app_key_hash` text,
	`previous_app_key_expires_at` integer,
	`audience` text NOT NULL,
	`access_ttl_seconds` integer NOT NULL,
	`refresh_ttl_seconds` integer NOT NULL,
	`refresh_nbf_seconds` integer NOT NULL,
	`session_ttl_seconds` integer NOT NULL,
	`reuse_grace_seconds` integer NOT NULL,
	`rotate_every_seconds` integer NOT NULL,
	`disabled` integer DEFAULT false NOT NULL,
	`created_at` integer NOT NULL,
	`updated_at` integer NOT NULL
);
--> statement-breakpoint
CREATE TABLE `refresh_tokens` (
	`jid` text PRIMARY KEY NOT NULL,
	`session_id` text NOT NULL,
	`parent_jid` text,
	`iat` integer NOT NULL,
	`nbf` integer NOT NULL,
	`exp` integer NOT NULL,
	`ip` text NOT NULL,
	`useragent` text NOT NULL,
	`used_at` integer,
	FOREIGN KEY (`session_id`) REFERENCES `sessions`(`session_id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE UNIQUE INDEX `refresh_tokens_parent_jid_unique` ON `refresh_tokens` (`parent_jid`);--> statement-breakpoint
CREATE INDEX `refresh_tokens_session_idx` ON `refresh_tokens` (`session_id`);--> statement-breakpoint
CREATE TABLE `sessions` (
	`session_id` text PRIMARY KEY NOT NULL,
	`app_id` text NOT NULL,
	`sub` text NOT NULL,
	`personal` text,
	`created_at` integer NOT NULL,
	`expires_at` integer NOT NULL,
	`revoked_at` integer,
	`revoke_reason` text,
	FOREIGN KEY (`app_id`) REFERENCES `apps`(`app_id`) ON UPDATE no action ON DELETE no action
);
--> statement-breakpoint
CREATE INDEX `sessions_app_sub_idx` ON `sessions` (`app_id`,`sub`);--> statement-breakpoint
CREATE TABLE `signing_keys` (
	`kid` text PRIMARY KEY NOT NULL,
	`app_id` text NOT NULL,
	`state` text NOT NULL,
	`sealed_private_key` text,
	`public_key_pem` text NOT NULL,
	`created_at` integer NOT NULL,
	`activated_at` integer,
	`retired_at` integer,
	`revoked_at` integer,
	`pruned_at` integer,
	FOREIGN KEY (`app_id`) REFERENCES `apps`(`app_id`) ON UPDATE no action ON DELETE no action
);
--> statement-breakpoint
CREATE INDEX `signing_keys_app_idx` ON `signing_keys` (`app_id`);--> statement-breakpoint
CREATE UNIQUE INDEX `signing_keys_one_current` ON `signing_keys` (`app_id`) WHERE state = 'current';--> statement-breakpoint
CREATE UNIQUE INDEX `signing_keys_one_next` ON `signing_keys` (`app_id`) WHERE state = 'next';