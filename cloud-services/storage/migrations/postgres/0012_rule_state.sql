-- Strata schema, version 12 (PostgreSQL): what each cloud rule remembers (strata::rules::RuleState
-- as JSON), written in the same transaction as the alarm changes it decided, so that the two
-- never disagree after a crash. A rule's state goes when the rule changes or is deleted.
CREATE TABLE IF NOT EXISTS rule_state (
  tenant_id  text COLLATE "C" NOT NULL,
  rule_id    text COLLATE "C" NOT NULL,
  state      text NOT NULL,
  updated_at bigint NOT NULL,
  PRIMARY KEY (tenant_id, rule_id)
);
