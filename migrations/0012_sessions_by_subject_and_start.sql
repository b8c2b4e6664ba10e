DROP INDEX `sessions_app_sub_idx`;--> statement-breakpoint
CREATE INDEX `sessions_app_sub_created_idx` ON `sessions` (`app_id`,`sub`,`created_at`);