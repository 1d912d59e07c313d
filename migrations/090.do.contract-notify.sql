-- Online reads by contract (GET /v1/online?contract=) cache how a contract resolves, beside the
-- feature references: a change to feature_contracts tells every instance to forget both, as a
-- change to feature_definitions does (migration 020). One notification per statement, sent only
-- if the transaction commits.

CREATE TRIGGER feature_contracts_notify_online
  AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON feature_contracts
  FOR EACH STATEMENT EXECUTE FUNCTION feature_store_notify_definitions();
