-- sipreg schema, version 1: the directory (domains, users), the location service (bindings),
-- the registrar's one-round-trip apply, and the proxies' API (sipreg_lookup, view location).
--
-- Applied by `sipregctl db migrate` inside one transaction, after the row of
-- sipreg_schema_version for this file; never edit a migration once released: add one.
--
-- Byte strings that come from SIP (user parts, AORs, contacts, Call-IDs, Path, User-Agent,
-- instance ids) are bytea: SIP allows bytes PostgreSQL text cannot hold (NUL, invalid UTF-8),
-- and the registrar must return them byte for byte. sipreg_text() gives the readable form
-- that the proxies' API and the operators' views show. Times are timestamptz (UTC).
-- "Live" means expires > now: the proxies' API, the views and the lease sweeper use the
-- database clock; the registrar passes its own "now" (see sipreg_apply and
-- docs/postgresql.md, "Clocks").

-- Readable form of a SIP byte string: the bytes themselves when they are valid UTF-8 without
-- NUL, otherwise NUL, '%' and non-ASCII bytes written as %XX (the bytea is authoritative).
-- sipreg_text() is plain SQL so the planner inlines its common case (plain ASCII: 'escape'
-- writes a backslash only for NUL, high-bit bytes and backslash itself).
CREATE FUNCTION sipreg_text_slow(b bytea) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
	r text := '';
	c integer;
BEGIN
	IF position('\x00'::bytea IN b) = 0 THEN
		BEGIN
			RETURN convert_from(b, 'UTF8');
		EXCEPTION WHEN character_not_in_repertoire OR untranslatable_character THEN
			NULL;
		END;
	END IF;
	FOR i IN 0 .. length(b) - 1 LOOP
		c := get_byte(b, i);
		IF c = 0 OR c = 37 OR c >= 128 THEN
			r := r || '%' || upper(lpad(to_hex(c), 2, '0'));
		ELSE
			r := r || chr(c);
		END IF;
	END LOOP;
	RETURN r;
END $$;

CREATE FUNCTION sipreg_text(b bytea) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
	SELECT CASE WHEN strpos(encode(b, 'escape'), '\') = 0 THEN encode(b, 'escape')
		    ELSE sipreg_text_slow(b) END
$$;

CREATE TABLE domains (
	domain text PRIMARY KEY CHECK (domain <> '' AND domain = lower(domain)),
	created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
	id bigserial PRIMARY KEY,
	username bytea NOT NULL CHECK (length(username) > 0),
	domain text NOT NULL REFERENCES domains (domain) ON UPDATE CASCADE,
	-- HA1 = H(username:realm:password), realm = domain; '' = not set. Never a password.
	ha1_md5 text NOT NULL DEFAULT '' CHECK (ha1_md5 ~ '^([0-9a-f]{32})?$'),
	ha1_sha256 text NOT NULL DEFAULT '' CHECK (ha1_sha256 ~ '^([0-9a-f]{64})?$'),
	enabled boolean NOT NULL DEFAULT true,
	auth_off boolean NOT NULL DEFAULT false,
	max_contacts integer NOT NULL DEFAULT 0 CHECK (max_contacts >= 0), -- 0 = registrar default
	aliases bytea[] NOT NULL DEFAULT '{}', -- other AORs, "user@domain", this user may register
	created_at timestamptz NOT NULL DEFAULT now(),
	updated_at timestamptz NOT NULL DEFAULT now(),
	UNIQUE (username, domain)
);
CREATE INDEX users_aliases_idx ON users USING gin (aliases);

-- Every change of the directory tells the sipregd instances to drop their user caches.
CREATE FUNCTION sipreg_users_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	PERFORM pg_notify('sipreg_users', TG_TABLE_NAME);
	RETURN NULL;
END $$;
CREATE TRIGGER users_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON users
	FOR EACH STATEMENT EXECUTE FUNCTION sipreg_users_notify();
CREATE TRIGGER domains_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON domains
	FOR EACH STATEMENT EXECUTE FUNCTION sipreg_users_notify();

CREATE TABLE bindings (
	id bigserial PRIMARY KEY,
	aor bytea NOT NULL,               -- canonical "user@domain" as the registrar built it
	username varchar NOT NULL,        -- readable user part and domain of aor (proxies;
	domain varchar NOT NULL,          -- varchar as in Kamailio's table, no cast in the view)
	contact bytea NOT NULL,           -- Contact URI as received
	contact_key bytea NOT NULL,       -- RFC 3261 §19.1.4 comparison key; unique per AOR
	received_proto text NOT NULL DEFAULT 'none'
		CHECK (received_proto IN ('none', 'udp', 'tcp', 'tls')),
	received_ip inet,                 -- source of the REGISTER (NULL when unknown)
	received_port integer NOT NULL DEFAULT 0 CHECK (received_port BETWEEN 0 AND 65535),
	conn_id bigint NOT NULL DEFAULT 0, -- TCP/TLS connection inside registered_by
	path bytea NOT NULL DEFAULT '',   -- Path header values joined by ","
	q smallint CHECK (q BETWEEN 0 AND 1000), -- thousandths; NULL = no q in the Contact
	expires timestamptz NOT NULL,
	call_id bytea NOT NULL,
	cseq bigint NOT NULL CHECK (cseq BETWEEN 0 AND 4294967295),
	instance bytea NOT NULL DEFAULT '', -- +sip.instance (RFC 5626)
	reg_id bigint NOT NULL DEFAULT 0,
	user_agent bytea NOT NULL DEFAULT '',
	registered_by bytea NOT NULL DEFAULT '', -- instance_id of the sipregd that stored it
	created_at timestamptz NOT NULL DEFAULT now(),
	updated_at timestamptz NOT NULL DEFAULT now(),
	-- Filled by a later qualify (OPTIONS keepalive) feature; NULL = never qualified.
	qualify_status text CHECK (qualify_status IN ('reachable', 'unreachable', 'lagged')),
	qualify_rtt_us integer,
	qualified_at timestamptz,
	UNIQUE (aor, contact_key)
);
CREATE INDEX bindings_expires_idx ON bindings (expires);
CREATE INDEX bindings_account_idx ON bindings (username, domain);
CREATE INDEX bindings_registered_by_idx ON bindings (registered_by, conn_id);

-- RFC 3261 §10.3 step 7 for one REGISTER, atomically per AOR across the cluster.
-- The change-set comes as parallel arrays (one element per Contact, in request order).
-- p_now (unix seconds) is the registrar's "now", the reference for expiry as the location
-- contract defines it; NULL takes the database clock.
-- Returns one status row (contact IS NULL; outcome 0 = applied, 1 = out-of-order CSeq,
-- 2 = too many contacts: nothing changed) followed by the AOR's live bindings after the
-- change. Called as the single statement of its transaction: the caller answers 200 only
-- once that transaction has committed.
CREATE FUNCTION sipreg_apply(
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
	-- The AOR lock: concurrent REGISTERs for one AOR, from any instance, run one after the
	-- other; each statement below then sees what the previous holder committed.
	PERFORM pg_advisory_xact_lock(1936289906, hashtext(encode(p_aor, 'hex')));
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

-- Remove bindings expired at p_now (unix seconds; NULL = the database clock). Space only:
-- no lookup ever returns an expired binding. At most one sweep runs at a time across the
-- cluster; a concurrent call returns 0 at once.
CREATE FUNCTION sipreg_sweep(p_now bigint DEFAULT NULL) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
	n bigint;
BEGIN
	IF NOT pg_try_advisory_xact_lock(8315178070380003329) THEN
		RETURN 0;
	END IF;
	DELETE FROM bindings WHERE expires <= coalesce(to_timestamp(p_now), clock_timestamp());
	GET DIAGNOSTICS n = ROW_COUNT;
	RETURN n;
END $$;

-- The directory lookup of the registrar: the user by name, else the user listing
-- user@domain among its aliases.
CREATE FUNCTION sipreg_find_user(p_user bytea, p_domain text)
RETURNS TABLE (username bytea, domain text, ha1_md5 text, ha1_sha256 text, enabled boolean,
	auth_off boolean, max_contacts integer, aliases bytea[])
LANGUAGE sql STABLE AS $$
	(SELECT u.username, u.domain, u.ha1_md5, u.ha1_sha256, u.enabled, u.auth_off,
		u.max_contacts, u.aliases
	 FROM users u WHERE u.username = p_user AND u.domain = lower(p_domain))
	UNION ALL
	(SELECT u.username, u.domain, u.ha1_md5, u.ha1_sha256, u.enabled, u.auth_off,
		u.max_contacts, u.aliases
	 FROM users u
	 WHERE u.aliases @> ARRAY[p_user || '@'::bytea || convert_to(lower(p_domain), 'UTF8')]
	 ORDER BY u.id)
	LIMIT 1
$$;

-- Proxy API: the live contacts of an AOR ("user@domain"), best first (q, then the most
-- recently refreshed), with where the REGISTER came from and the Path to route through.
CREATE FUNCTION sipreg_lookup(p_aor text)
RETURNS TABLE (contact text, q real, expires timestamptz, received text, path text,
	received_proto text, received_ip inet, received_port integer, instance text,
	reg_id bigint, user_agent text, registered_by text, conn_id bigint,
	updated_at timestamptz)
LANGUAGE sql STABLE AS $$
	SELECT sipreg_text(b.contact), coalesce(b.q, 1000)::real / 1000, b.expires,
		CASE WHEN b.received_ip IS NULL THEN NULL
		ELSE 'sip:' || CASE WHEN family(b.received_ip) = 6
				    THEN '[' || host(b.received_ip) || ']'
				    ELSE host(b.received_ip) END
			|| ':' || b.received_port
			|| CASE WHEN b.received_proto IN ('tcp', 'tls')
				THEN ';transport=' || b.received_proto ELSE '' END
		END,
		nullif(sipreg_text(b.path), ''), b.received_proto, b.received_ip,
		b.received_port, nullif(sipreg_text(b.instance), ''), b.reg_id,
		sipreg_text(b.user_agent), sipreg_text(b.registered_by), b.conn_id, b.updated_at
	FROM bindings b
	WHERE b.aor = convert_to(p_aor, 'UTF8') AND b.expires > now()
	ORDER BY coalesce(b.q, 1000) DESC, b.updated_at DESC, b.id
$$;

-- Kamailio's table-version registry (same shape as Kamailio's own): usrloc checks that
-- "location" is at version 9 before it reads it.
CREATE TABLE IF NOT EXISTS version (
	id serial PRIMARY KEY,
	table_name varchar(32) NOT NULL UNIQUE,
	table_version integer NOT NULL DEFAULT 0
);
INSERT INTO version (table_name, table_version) VALUES ('location', 9)
	ON CONFLICT (table_name) DO UPDATE SET table_version = 9;

-- A read-only view with the columns and types of Kamailio's usrloc `location` table (schema
-- version 9), live bindings only, so an unmodified Kamailio proxy with usrloc db_mode=3 can
-- lookup("location") here. Timestamps are shown in the session's TimeZone, as Kamailio's
-- own table holds them (Kamailio and the database must agree on the time zone).
CREATE VIEW location AS
SELECT b.id::integer AS id,
	('sipreg-' || b.id)::varchar(64) AS ruid,
	b.username,
	b.domain,
	sipreg_text(b.contact)::varchar(512) AS contact,
	(CASE WHEN b.received_ip IS NULL THEN NULL
	 ELSE 'sip:' || CASE WHEN family(b.received_ip) = 6
			     THEN '[' || host(b.received_ip) || ']'
			     ELSE host(b.received_ip) END
		|| ':' || b.received_port
		|| CASE WHEN b.received_proto IN ('tcp', 'tls')
			THEN ';transport=' || b.received_proto ELSE '' END
	 END)::varchar(128) AS received,
	nullif(sipreg_text(b.path), '')::varchar(512) AS path,
	b.expires::timestamp AS expires,
	(coalesce(b.q, 1000)::real / 1000)::real AS q,
	sipreg_text(b.call_id)::varchar(255) AS callid,
	least(b.cseq, 2147483647)::integer AS cseq,
	b.updated_at::timestamp AS last_modified,
	0 AS flags,
	0 AS cflags,
	sipreg_text(b.user_agent)::varchar(255) AS user_agent,
	NULL::varchar(64) AS socket,
	NULL::integer AS methods,
	nullif(sipreg_text(b.instance), '')::varchar(255) AS instance,
	least(b.reg_id, 2147483647)::integer AS reg_id,
	0 AS server_id,
	0 AS connection_id,
	0 AS keepalive,
	0 AS partition
FROM bindings b
WHERE b.expires > now();

-- Read-only: writes through the view are refused, except Kamailio's periodic delete of
-- expired rows, which is accepted and does nothing (the sweeper owns that).
CREATE FUNCTION sipreg_location_readonly() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF TG_OP = 'DELETE' THEN
		RETURN NULL;
	END IF;
	RAISE EXCEPTION 'location is a read-only view of sipreg bindings'
		USING ERRCODE = '42809';
END $$;
CREATE TRIGGER location_readonly INSTEAD OF INSERT OR UPDATE OR DELETE ON location
	FOR EACH ROW EXECUTE FUNCTION sipreg_location_readonly();
