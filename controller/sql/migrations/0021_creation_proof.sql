-- Berth schema, version 21: the key of Berth's creation proofs. Every container or service
-- Berth creates carries `io.berth.proof`, an HMAC-SHA256 keyed by this row of what it was
-- created as (cluster, deployment, slot, spec hash, name): `controller.model.provenance`.
-- When a creation record is lost (an asynchronous standby promoted without the old
-- primary's last transactions, a restore from an older backup) the leader writes the record
-- again for a replica whose proof holds, instead of replacing it; a replica carrying Berth's
-- labels without a valid proof (made by hand, or by a Berth of another database) is never
-- adopted. The key is made here, once, from the server's random source and never leaves the
-- database but to Berth's own role: no operator or viewer grant, nothing logged.

CREATE TABLE berth_proof_key (
    only_row boolean PRIMARY KEY DEFAULT true CONSTRAINT berth_proof_key_one_row CHECK (only_row),
    key      text NOT NULL CONSTRAINT berth_proof_key_hex CHECK (key ~ '^[0-9a-f]{64}$')
);
INSERT INTO berth_proof_key (key)
VALUES (encode(sha256(convert_to(gen_random_uuid()::text || gen_random_uuid()::text
                                 || clock_timestamp()::text, 'UTF8')), 'hex'));

COMMENT ON TABLE berth_proof_key IS
    'The secret key of the io.berth.proof label (an HMAC of a replica''s identity): readable by Berth''s own role only.';

SELECT berth_grant_roles();
