-- Custom migration (drizzle-kit generate --custom): drizzle-kit does not generate triggers.
-- catalog_version.version moves whenever an app or a signing key changes, whoever writes it, so a
-- running server can cache apps and keys and still see a CLI change on its next request.
INSERT INTO `catalog_version` (`id`, `version`) VALUES (1, 0);
--> statement-breakpoint
CREATE TRIGGER `apps_insert_bumps_catalog` AFTER INSERT ON `apps` BEGIN UPDATE `catalog_version` SET `version` = `version` + 1 WHERE `id` = 1; END;
--> statement-breakpoint
CREATE TRIGGER `apps_update_bumps_catalog` AFTER UPDATE ON `apps` BEGIN UPDATE `catalog_version` SET `version` = `version` + 1 WHERE `id` = 1; END;
--> statement-breakpoint
CREATE TRIGGER `apps_delete_bumps_catalog` AFTER DELETE ON `apps` BEGIN UPDATE `catalog_version` SET `version` = `version` + 1 WHERE `id` = 1; END;
--> statement-breakpoint
CREATE TRIGGER `signing_keys_insert_bumps_catalog` AFTER INSERT ON `signing_keys` BEGIN UPDATE `catalog_version` SET `version` = `version` + 1 WHERE `id` = 1; END;
--> statement-breakpoint
CREATE TRIGGER `signing_keys_update_bumps_catalog` AFTER UPDATE ON `signing_keys` BEGIN UPDATE `catalog_version` SET `version` = `version` + 1 WHERE `id` = 1; END;
--> statement-breakpoint
CREATE TRIGGER `signing_keys_delete_bumps_catalog` AFTER DELETE ON `signing_keys` BEGIN UPDATE `catalog_version` SET `version` = `version` + 1 WHERE `id` = 1; END;
