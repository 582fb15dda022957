-- sipreg schema, version 3: the qualify state (OPTIONS pings, src/ops/qualify.c) as the
-- cluster stores it: which instance stored it, and an 'unmonitored' state.
--
-- Version 1 already has qualify_status, qualify_rtt_us and qualified_at, and sipreg_apply
-- clears them when a REGISTER refreshes a binding (its flow may have moved). Each contact
-- is pinged by one instance: the one that registered it, or the one that claimed it after
-- its registering instance stopped storing results (qualified_by records who). The claim
-- is one conditional UPDATE (backends/pg/stmts.c), so two claimants cannot both win.

ALTER TABLE bindings DROP CONSTRAINT IF EXISTS bindings_qualify_status_check;
ALTER TABLE bindings ADD CONSTRAINT bindings_qualify_status_check
	CHECK (qualify_status IN ('reachable', 'unreachable', 'lagged', 'unmonitored'));
ALTER TABLE bindings ADD COLUMN qualified_by bytea; -- instance_id that stored the state
