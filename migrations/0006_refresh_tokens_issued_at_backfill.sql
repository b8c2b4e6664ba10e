-- A token's issued_at is when it was issued, in ms. A child was issued in the transaction that marked
-- its parent used, at the parent's used_at; a first token (or one whose parent was pruned) gets its
-- iat. Next, migration 0007 drops used_at: from then on a token is used exactly when it has a child.
UPDATE `refresh_tokens` SET `issued_at` = coalesce(
	(SELECT `parent`.`used_at` FROM `refresh_tokens` AS `parent` WHERE `parent`.`jid` = `refresh_tokens`.`parent_jid`),
	`refresh_tokens`.`iat` * 1000
);
