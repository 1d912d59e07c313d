-- Idempotency keys belong to the caller that sent them: the same Idempotency-Key from two API
-- keys is two independent keys. `principal` is 'key:<api key id>', 'env:ADMIN_API_KEY' for the
-- bootstrap key of the environment, or 'anonymous' when authentication is off. Rows stored
-- before this migration belong to no caller that can send again ('unattributed'): they replay
-- for no one and are purged with the others once older than IDEMPOTENCY_KEEP_HOURS.

ALTER TABLE idempotency_keys ADD COLUMN principal text NOT NULL DEFAULT 'unattributed';
ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_pkey;
ALTER TABLE idempotency_keys ADD PRIMARY KEY (scope, principal, key);
