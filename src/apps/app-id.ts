/**
 * An app's id: 1–63 of a-z 0-9 _ -, starting with a letter or digit. It is also the tokens' `iss`.
 * No imports, so that tokenmint/client can check one without loading the server's modules.
 */
export const APP_ID = /^[a-z0-9][a-z0-9_-]{0,62}$/;
export const APP_ID_RULE = '1–63 characters of a-z 0-9 _ -, starting with a letter or digit';
export const isAppId = (value: unknown): value is string => typeof value === 'string' && APP_ID.test(value);
