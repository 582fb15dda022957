-- sipreg schema, version 2: the AOR lock of sipreg_apply keyed on the 64-bit value the
-- registrar also orders its batches by, and a sweep that never waits on a row lock.
--
-- Version 1 locked hashtext(aor), 32 bits, while sipregd ordered a batch's statements by a
-- different 64-bit hash: two AORs sharing a lock key could sort differently, and two
-- batches [A, B] and [B, C] (A, C colliding) deadlocked. sipregd now computes one key per
-- AOR (XXH3-64 of its bytes), sorts each batch by it and passes it in; the lock and the
-- order are the same value, so every transaction takes AOR locks in one global order.

-- The apply of version 1 with the lock key first. p_lock_key NULL = the caller already
-- holds the AOR's lock (the version-1 signature below).
CREATE FUNCTION sipreg_apply(
	p_lock_key bigint,
	p_aor bytea, p_call_id bytea, p_cseq bigint, p_wildcard boolean,
	p_contacts bytea[], p_keys bytea[], p_expires integer[], p_q integer[],
	p_instances bytea[], p_reg_ids bigint[], p_max_contacts integer,
	p_path bytea, p_user_agent bytea, p_proto text, p_ip text, p_port integer,
	p_conn_id bigint, p_registered_by bytea, p_now bigint)
RETURNS TABLE (outcome integer, contact bytea, contact_key bytea, expires_at bigint,
	q integer, call_id bytea, cseq bigint, path bytea, instance bytea, reg_id bigint,
	user_agent bytea, received_proto text, received_ip text, received_port integer,
	conn_id bigint, registered_by bytea, updated_at bigint)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
	v_n integer := coalesce(array_length(p_keys, 1), 0);
	v_now timestamptz;
	v_count bigint;
	v_aor text;
	v_k bytea[];
	v_c bytea[];
	v_e integer[];
	v_q integer[];
	v_i bytea[];
	v_r bigint[];
BEGIN
	IF p_aor IS NULL OR p_call_id IS NULL OR p_cseq IS NULL OR p_wildcard IS NULL
	   OR coalesce(array_length(p_contacts, 1), 0) <> v_n
	   OR coalesce(array_length(p_expires, 1), 0) <> v_n
	   OR coalesce(array_length(p_q, 1), 0) <> v_n
	   OR coalesce(array_length(p_instances, 1), 0) <> v_n
	   OR coalesce(array_length(p_reg_ids, 1), 0) <> v_n THEN
		RAISE EXCEPTION 'sipreg_apply: malformed change-set' USING ERRCODE = '22023';
	END IF;
	IF p_lock_key IS NOT NULL THEN
		-- The AOR lock, in the caller's batch order (see the header).
		PERFORM pg_advisory_xact_lock(p_lock_key);
		-- Shared, so callers of this signature never wait on each other here: it only
		-- keeps out a version-1 instance still running during a rolling upgrade, which
		-- takes this key exclusively (docs/postgresql.md, "Upgrading").
		PERFORM pg_advisory_xact_lock_shared(1936289906, hashtext(encode(p_aor, 'hex')));
	END IF;
	v_now := coalesce(to_timestamp(p_now), clock_timestamp());

	IF p_wildcard THEN
		IF EXISTS (SELECT 1 FROM bindings b
			   WHERE b.aor = p_aor AND b.expires > v_now
			     AND b.call_id = p_call_id AND b.cseq >= p_cseq) THEN
			outcome := 1;
			RETURN NEXT;
			RETURN;
		END IF;
		DELETE FROM bindings b WHERE b.aor = p_aor;
	ELSIF v_n > 0 THEN
		IF EXISTS (SELECT 1 FROM bindings b
			   WHERE b.aor = p_aor AND b.contact_key = ANY (p_keys)
			     AND b.expires > v_now AND b.call_id = p_call_id
			     AND b.cseq >= p_cseq) THEN
			outcome := 1;
			RETURN NEXT;
			RETURN;
		END IF;
		-- Contacts apply in request order, so for a key given twice the last one wins.
		SELECT array_agg(d.k ORDER BY d.k), array_agg(d.c ORDER BY d.k),
		       array_agg(d.e ORDER BY d.k), array_agg(d.q ORDER BY d.k),
		       array_agg(d.inst ORDER BY d.k), array_agg(d.rid ORDER BY d.k)
		INTO v_k, v_c, v_e, v_q, v_i, v_r
		FROM (SELECT DISTINCT ON (x.k) x.k, x.c, x.e, x.q, x.inst, x.rid
		      FROM unnest(p_keys, p_contacts, p_expires, p_q, p_instances, p_reg_ids)
			   WITH ORDINALITY AS x(k, c, e, q, inst, rid, ord)
		      ORDER BY x.k, x.ord DESC) d;

		IF p_max_contacts > 0 THEN
			SELECT (SELECT count(*) FROM bindings b
				WHERE b.aor = p_aor AND b.expires > v_now
				  AND b.contact_key <> ALL (v_k))
			     + (SELECT count(*) FROM unnest(v_e) AS u(e) WHERE u.e > 0)
			INTO v_count;
			IF v_count > p_max_contacts THEN
				outcome := 2;
				RETURN NEXT;
				RETURN;
			END IF;
		END IF;

		DELETE FROM bindings b
		WHERE b.aor = p_aor
		  AND b.contact_key = ANY (ARRAY(SELECT u.k FROM unnest(v_k, v_e) AS u(k, e)
						 WHERE u.e = 0));

		v_aor := sipreg_text(p_aor);
		INSERT INTO bindings AS b (aor, username, domain, contact, contact_key,
			received_proto, received_ip, received_port, conn_id, path, q, expires,
			call_id, cseq, instance, reg_id, user_agent, registered_by, created_at,
			updated_at)
		SELECT p_aor, coalesce(substring(v_aor FROM '^(.*)@[^@]*$'), v_aor),
			coalesce(substring(v_aor FROM '@([^@]*)$'), ''), s.c, s.k,
			coalesce(p_proto, 'none'), nullif(p_ip, '')::inet, coalesce(p_port, 0),
			coalesce(p_conn_id, 0), coalesce(p_path, ''), s.q,
			v_now + make_interval(secs => s.e), p_call_id, p_cseq,
			coalesce(s.inst, ''), coalesce(s.rid, 0), coalesce(p_user_agent, ''),
			coalesce(p_registered_by, ''), v_now, v_now
		FROM unnest(v_k, v_c, v_e, v_q, v_i, v_r) AS s(k, c, e, q, inst, rid)
		WHERE s.e > 0
		ON CONFLICT ON CONSTRAINT bindings_aor_contact_key_key DO UPDATE SET
			contact = excluded.contact, received_proto = excluded.received_proto,
			received_ip = excluded.received_ip, received_port = excluded.received_port,
			conn_id = excluded.conn_id, path = excluded.path, q = excluded.q,
			expires = excluded.expires, call_id = excluded.call_id,
			cseq = excluded.cseq, instance = excluded.instance,
			reg_id = excluded.reg_id, user_agent = excluded.user_agent,
			registered_by = excluded.registered_by, updated_at = excluded.updated_at,
			-- a binding that had expired is a new one, not a refresh
			created_at = CASE WHEN b.expires > v_now THEN b.created_at
				     ELSE excluded.created_at END,
			qualify_status = NULL, qualify_rtt_us = NULL, qualified_at = NULL;
	END IF;

	outcome := 0;
	RETURN NEXT;
	RETURN QUERY
	SELECT NULL::integer, b.contact, b.contact_key,
		floor(extract(epoch FROM b.expires))::bigint, b.q::integer, b.call_id, b.cseq,
		b.path, b.instance, b.reg_id, b.user_agent, b.received_proto, host(b.received_ip),
		b.received_port, b.conn_id, b.registered_by,
		floor(extract(epoch FROM b.updated_at))::bigint
	FROM bindings b
	WHERE b.aor = p_aor AND b.expires > v_now
	ORDER BY coalesce(b.q, 1000) DESC, b.updated_at DESC, b.id;
END $$;

-- The version-1 signature, kept for instances of the previous release during a rolling
-- upgrade: the same exclusive 32-bit lock as before (so it and the keyed apply above
-- exclude each other on an AOR), then the same rules. It still orders nothing: mixed
-- batches of old and new instances can deadlock until the old ones are gone.
CREATE OR REPLACE FUNCTION sipreg_apply(
	p_aor bytea, p_call_id bytea, p_cseq bigint, p_wildcard boolean,
	p_contacts bytea[], p_keys bytea[], p_expires integer[], p_q integer[],
	p_instances bytea[], p_reg_ids bigint[], p_max_contacts integer,
	p_path bytea, p_user_agent bytea, p_proto text, p_ip text, p_port integer,
	p_conn_id bigint, p_registered_by bytea, p_now bigint DEFAULT NULL)
RETURNS TABLE (outcome integer, contact bytea, contact_key bytea, expires_at bigint,
	q integer, call_id bytea, cseq bigint, path bytea, instance bytea, reg_id bigint,
	user_agent bytea, received_proto text, received_ip text, received_port integer,
	conn_id bigint, registered_by bytea, updated_at bigint)
LANGUAGE plpgsql AS $$
BEGIN
	IF p_aor IS NOT NULL THEN
		PERFORM pg_advisory_xact_lock(1936289906, hashtext(encode(p_aor, 'hex')));
	END IF;
	RETURN QUERY SELECT * FROM sipreg_apply(NULL::bigint, p_aor, p_call_id, p_cseq,
		p_wildcard, p_contacts, p_keys, p_expires, p_q, p_instances, p_reg_ids,
		p_max_contacts, p_path, p_user_agent, p_proto, p_ip, p_port, p_conn_id,
		p_registered_by, p_now);
END $$;

-- Remove up to p_limit bindings expired at p_now (unix seconds; NULL = the database clock)
-- and return how many went; a caller that gets p_limit back calls again. It never waits:
-- a row some apply has locked (it holds that AOR's lock and may be reviving the row) is
-- skipped this time, so the sweep is never part of a lock cycle and holds its locks for
-- one bounded statement. At most one sweep runs at a time across the cluster; a
-- concurrent call returns 0 at once.
CREATE FUNCTION sipreg_sweep(p_now bigint, p_limit integer) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
	n bigint;
BEGIN
	IF NOT pg_try_advisory_xact_lock(8315178070380003329) THEN
		RETURN 0;
	END IF;
	DELETE FROM bindings WHERE id IN (
		SELECT b.id FROM bindings b
		WHERE b.expires <= coalesce(to_timestamp(p_now), clock_timestamp())
		ORDER BY b.expires
		LIMIT greatest(coalesce(p_limit, 10000), 1)
		FOR UPDATE SKIP LOCKED);
	GET DIAGNOSTICS n = ROW_COUNT;
	RETURN n;
END $$;

-- The version-1 signature (a previous release's lease holder calls it): the same sweep,
-- one bounded batch.
CREATE OR REPLACE FUNCTION sipreg_sweep(p_now bigint DEFAULT NULL) RETURNS bigint
LANGUAGE sql AS $$
	SELECT sipreg_sweep(p_now, 10000)
$$;
