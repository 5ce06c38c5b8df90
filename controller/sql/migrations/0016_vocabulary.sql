-- Berth schema, version 16: the mutation log's actions are one vocabulary
-- (controller/model/records.py MutationAction; tests/unit/test_vocabulary.py holds the two
-- equal): the database refuses any other, as it does for phases, outcomes and resolutions.
ALTER TABLE berth_mutations
    ADD CONSTRAINT berth_mutations_action_known
    CHECK (action IN ('create', 'start', 'restart', 'remove'));
