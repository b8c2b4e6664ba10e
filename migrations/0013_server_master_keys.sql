CREATE TABLE `server_master_keys` (
	`id` text PRIMARY KEY NOT NULL,
	`recorded_at` integer NOT NULL
);
