-- Strata schema, version 11 (SQLite): what each cloud rule remembers (strata::rules::RuleState
-- as JSON), written in the same transaction as the alarm changes it decided, so that the two
-- never disagree after a crash. A rule's state goes when the rule changes or is deleted.
CREATE TABLE rule_state (
  tenant_id  TEXT NOT NULL,
  rule_id    TEXT NOT NULL,
  state      TEXT NOT NULL,
  updated_at INTEGER NOT NULL,
  PRIMARY KEY (tenant_id, rule_id)
);
