/* Inside the ldap backend: binding entries under AOR entries: the read, the RFC 3261
 * §10.3 step 7 decision, the claim/write/commit CAS under the RFC 4528 assertion control. */
#include "internal.h"

static const char *const binding_attrs[] = {
    "objectClass",	  "sipregAor",	     "sipregVersion",	"sipregCommitted",
    "sipregClaimedAt",	  "sipregContact",   "sipregContactKey", "sipregExpires",
    "sipregQ",		  "sipregCallId",    "sipregCSeq",	"sipregPath",
    "sipregInstance",	  "sipregRegId",     "sipregUserAgent", "sipregReceivedProto",
    "sipregReceivedIP",	  "sipregReceivedPort", "sipregConnId",	"sipregRegisteredBy",
    "sipregUpdatedAt",	  NULL};

/* Parse a sipregBinding entry into op->stored. */
static int stored_add(struct lb_op *op, LDAP *ld, LDAPMessage *e)
{
	struct lb_stored *s;
	struct binding *b;
	struct sip_str proto = {0}, ip = {0};
	char *dn;
	int err;

	if (op->n_stored == op->cap_stored) {
		size_t cap = op->cap_stored ? op->cap_stored * 2 : 8;
		struct lb_stored *v = realloc(op->stored, cap * sizeof(*v));

		if (!v)
			return ENOMEM;
		op->stored = v;
		op->cap_stored = cap;
	}
	s = &op->stored[op->n_stored];
	memset(s, 0, sizeof(*s));
	b = &s->b;
	dn = ldap_get_dn(ld, e);
	s->dn = dn ? strdup(dn) : NULL;
	ldap_memfree(dn);
	op->n_stored++;
	err = s->dn ? 0 : ENOMEM;
	if (!err)
		err = lb_attr_str(ld, e, "sipregAor", &b->aor);
	if (!err)
		err = lb_attr_str(ld, e, "sipregContact", &b->contact);
	if (!err)
		err = lb_attr_str(ld, e, "sipregContactKey", &b->key);
	if (!err)
		err = lb_attr_str(ld, e, "sipregCallId", &b->call_id);
	if (!err)
		err = lb_attr_str(ld, e, "sipregPath", &b->path);
	if (!err)
		err = lb_attr_str(ld, e, "sipregInstance", &b->instance);
	if (!err)
		err = lb_attr_str(ld, e, "sipregUserAgent", &b->user_agent);
	if (!err)
		err = lb_attr_str(ld, e, "sipregRegisteredBy", &b->registered_by);
	if (!err)
		err = lb_attr_str(ld, e, "sipregReceivedProto", &proto);
	if (!err)
		err = lb_attr_str(ld, e, "sipregReceivedIP", &ip);
	if (err) {
		lb_str_free(&proto);
		lb_str_free(&ip);
		return err;
	}
	b->expires_at = lb_attr_int(ld, e, "sipregExpires", 0);
	b->q = (int16_t)lb_attr_int(ld, e, "sipregQ", Q_NONE);
	b->cseq = (uint32_t)lb_attr_int(ld, e, "sipregCSeq", 0);
	b->reg_id = (uint32_t)lb_attr_int(ld, e, "sipregRegId", 0);
	b->updated_at = lb_attr_int(ld, e, "sipregUpdatedAt", 0);
	b->source.proto = sip_proto_from_name(proto.p, proto.len);
	if (ip.len < sizeof(b->source.ip))
		memcpy(b->source.ip, ip.p, ip.len + 1);
	b->source.port = (uint16_t)lb_attr_int(ld, e, "sipregReceivedPort", 0);
	b->source.conn_id = (uint64_t)lb_attr_int(ld, e, "sipregConnId", 0);
	lb_str_free(&proto);
	lb_str_free(&ip);
	s->live = b->expires_at > op->now;
	return 0;
}

static int q_rank(int16_t q)
{
	return q == Q_NONE ? 1000 : q;
}

/* Most preferred first: q descending, then the most recently updated, then by key. */
static int binding_cmp(const void *pa, const void *pb)
{
	const struct binding *a = pa, *b = pb;
	size_t n = a->key.len < b->key.len ? a->key.len : b->key.len;
	int c;

	if (q_rank(a->q) != q_rank(b->q))
		return q_rank(b->q) - q_rank(a->q);
	if (a->updated_at != b->updated_at)
		return a->updated_at < b->updated_at ? 1 : -1;
	c = n ? memcmp(a->key.p, b->key.p, n) : 0;
	if (c)
		return c;
	return a->key.len < b->key.len ? -1 : a->key.len > b->key.len;
}

/* The binding a change of op's request stores. */
static void binding_of_change(const struct lb_op *op, size_t i, struct binding *b)
{
	const struct reg_change *ch = &op->changes[i];

	memset(b, 0, sizeof(*b));
	b->aor = op->aor;
	b->contact = ch->contact;
	b->key = ch->key;
	b->expires_at = op->req.now + ch->expires;
	b->q = ch->q;
	b->call_id = op->req.call_id;
	b->cseq = op->req.cseq;
	b->path = op->req.path;
	b->instance = ch->instance;
	b->reg_id = ch->reg_id;
	b->user_agent = op->req.user_agent;
	b->source = op->req.source;
	b->registered_by = op->req.instance_id;
	b->updated_at = op->req.now;
}

static struct lb_stored *stored_find(struct lb_op *op, const struct sip_str *key)
{
	for (size_t i = 0; i < op->n_stored; i++) {
		if (op->stored[i].live && sip_str_eq(&op->stored[i].b.key, key))
			return &op->stored[i];
	}
	return NULL;
}

/* The hex SHA-256 of the contact key: the RDN value of a binding entry. */
static int binding_dn(const struct lb_op *op, const struct sip_str *key, char **dnp)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char md[32];
	unsigned int mdlen = 0;
	char h[65];

	if (!EVP_Digest(key->p ? key->p : "", key->len, md, &mdlen, EVP_sha256(), NULL) ||
	    mdlen != 32)
		return ENOMEM;
	for (size_t i = 0; i < 32; i++) {
		h[2 * i] = hex[md[i] >> 4];
		h[2 * i + 1] = hex[md[i] & 15];
	}
	h[64] = '\0';
	*dnp = lb_str_printf("sipregBindingId=%s,%s", h, op->aor_dn);
	return *dnp ? 0 : ENOMEM;
}

int lb_write_push(struct lb_op *op, enum lb_wkind kind, size_t change, char *dn)
{
	struct lb_write *v = realloc(op->writes, (op->n_writes + 1) * sizeof(*v));

	if (!v) {
		free(dn);
		return ENOMEM;
	}
	op->writes = v;
	v[op->n_writes++] = (struct lb_write){.kind = kind, .change = change, .dn = dn};
	return 0;
}

/* RFC 3261 §10.3 step 7 over what the read found: the outcome, and the writes in
 * op->writes (expired entries of the AOR are deleted on the way). */
static int apply_decide(struct lb_op *op)
{
	size_t live = 0, adds = 0;
	int err = 0;

	op->outcome = REG_OK;
	lb_writes_free(op);
	for (size_t i = 0; i < op->n_stored; i++)
		live += op->stored[i].live;
	if (op->req.wildcard) {
		for (size_t i = 0; i < op->n_stored; i++) {
			const struct lb_stored *s = &op->stored[i];

			if (s->live && sip_str_eq(&s->b.call_id, &op->req.call_id) &&
			    s->b.cseq >= op->req.cseq) {
				op->outcome = REG_OUT_OF_ORDER;
				return 0;
			}
		}
	} else {
		for (size_t i = 0; i < op->req.n_changes; i++) {
			const struct lb_stored *s = stored_find(op, &op->changes[i].key);

			if (s && sip_str_eq(&s->b.call_id, &op->req.call_id) &&
			    op->req.cseq <= s->b.cseq) {
				op->outcome = REG_OUT_OF_ORDER;
				return 0;
			}
		}
		for (size_t i = 0; i < op->req.n_changes; i++) {
			bool stored;

			if (op->superseded[i])
				continue;
			stored = stored_find(op, &op->changes[i].key) != NULL;
			if (stored && op->changes[i].expires == 0)
				live--;
			else if (!stored && op->changes[i].expires > 0)
				adds++;
		}
		if (op->req.max_contacts > 0 && live + adds > op->req.max_contacts) {
			op->outcome = REG_TOO_MANY_CONTACTS;
			return 0;
		}
	}
	for (size_t i = 0; i < op->n_stored && !err; i++) {
		struct lb_stored *s = &op->stored[i];

		s->drop = !s->live || op->req.wildcard;
		if (s->drop) {
			char *dn = strdup(s->dn);

			err = dn ? lb_write_push(op, W_DELETE, 0, dn) : ENOMEM;
		}
	}
	for (size_t i = 0; !op->req.wildcard && i < op->req.n_changes && !err; i++) {
		struct lb_stored *s;
		char *dn = NULL;

		if (op->superseded[i])
			continue;
		s = stored_find(op, &op->changes[i].key);
		if (!s && op->changes[i].expires == 0)
			continue;
		err = binding_dn(op, &op->changes[i].key, &dn);
		if (err)
			break;
		if (s)
			s->drop = true;
		if (s && op->changes[i].expires == 0)
			err = lb_write_push(op, W_DELETE, i, dn);
		else
			err = lb_write_push(op, s ? W_MODIFY : W_ADD, i, dn);
	}
	return err;
}

/* The AOR's live bindings after the change-set: kept entries plus what the request wrote. */
static bool apply_finish(struct lb_op *op)
{
	struct binding *v = calloc(op->n_stored + op->req.n_changes + 1, sizeof(*v));
	struct binding_set set;
	size_t n = 0;

	if (!v)
		return lb_op_complete(op, ENOMEM, NULL, NULL);
	for (size_t i = 0; i < op->n_stored; i++) {
		if (op->stored[i].live && !op->stored[i].drop)
			v[n++] = op->stored[i].b;
	}
	for (size_t i = 0; i < op->n_writes; i++) {
		if (op->writes[i].kind != W_DELETE)
			binding_of_change(op, op->writes[i].change, &v[n++]);
	}
	if (n > 1)
		qsort(v, n, sizeof(*v), binding_cmp);
	set = lb_set_of(op, v, n);
	{
		bool alive = lb_op_complete(op, 0, &set, NULL);

		free(v);
		return alive;
	}
}

static void mods_binding(struct mods *m, int op, const struct binding *b, const char *id)
{
	const char *proto = sip_proto_name(b->source.proto);
	struct sip_str ip = sip_str_c(b->source.ip);

	if (op == LDAP_MOD_ADD) {
		static const char cls[] = "sipregBinding";

		lb_mods_bytes(m, op, "objectClass", cls, sizeof(cls) - 1);
		lb_mods_bytes(m, op, "sipregBindingId", id, strlen(id));
		lb_mods_str(m, op, "sipregAor", &b->aor);
	}
	lb_mods_bytes(m, op, "sipregContact", b->contact.p, b->contact.len);
	lb_mods_bytes(m, op, "sipregContactKey", b->key.p, b->key.len);
	lb_mods_int(m, op, "sipregExpires", (long long)b->expires_at);
	if (b->q != Q_NONE)
		lb_mods_int(m, op, "sipregQ", b->q);
	else if (op == LDAP_MOD_REPLACE)
		lb_mods_bytes(m, op, "sipregQ", NULL, 0);
	lb_mods_bytes(m, op, "sipregCallId", b->call_id.p, b->call_id.len);
	lb_mods_int(m, op, "sipregCSeq", b->cseq);
	lb_mods_str(m, op, "sipregPath", &b->path);
	lb_mods_str(m, op, "sipregInstance", &b->instance);
	if (b->reg_id)
		lb_mods_int(m, op, "sipregRegId", b->reg_id);
	else if (op == LDAP_MOD_REPLACE)
		lb_mods_bytes(m, op, "sipregRegId", NULL, 0);
	lb_mods_str(m, op, "sipregUserAgent", &b->user_agent);
	if (proto && *proto)
		lb_mods_bytes(m, op, "sipregReceivedProto", proto, strlen(proto));
	lb_mods_str(m, op, "sipregReceivedIP", &ip);
	lb_mods_int(m, op, "sipregReceivedPort", b->source.port);
	if (b->source.conn_id)
		lb_mods_int(m, op, "sipregConnId", (long long)b->source.conn_id);
	else if (op == LDAP_MOD_REPLACE)
		lb_mods_bytes(m, op, "sipregConnId", NULL, 0);
	lb_mods_str(m, op, "sipregRegisteredBy", &b->registered_by);
	lb_mods_int(m, op, "sipregUpdatedAt", (long long)b->updated_at);
}

static int send_claim(struct lb_op *op)
{
	struct mods m = {0};
	LDAPControl *ctrl = NULL, *ctrls[2] = {NULL, NULL};
	char filter[96];
	int rc, err;

	op->step = ST_CLAIM;
	if (!op->aor_exists) {
		static const char cls[] = "sipregAorEntry";

		op->version = 1;
		lb_mods_bytes(&m, LDAP_MOD_ADD, "objectClass", cls, sizeof(cls) - 1);
		lb_mods_str(&m, LDAP_MOD_ADD, "sipregAor", &op->aor);
		lb_mods_int(&m, LDAP_MOD_ADD, "sipregVersion", 1);
		lb_mods_int(&m, LDAP_MOD_ADD, "sipregCommitted", 0);
		lb_mods_str(&m, LDAP_MOD_ADD, "sipregClaimedBy", &op->req.instance_id);
		lb_mods_int(&m, LDAP_MOD_ADD, "sipregClaimedAt", (long long)lb_wall_ms());
		rc = ldap_add_ext(op->conn->ld, op->aor_dn, m.v, NULL, NULL, &op->msgid);
		return lb_check_rc(op, rc);
	}
	snprintf(filter, sizeof(filter), "(&(sipregVersion=%lld)(sipregCommitted=%lld))",
		 (long long)op->version, (long long)op->committed);
	err = lb_assertion(op, filter, &ctrl);
	if (err)
		return err;
	ctrls[0] = ctrl;
	op->version++;
	lb_mods_int(&m, LDAP_MOD_REPLACE, "sipregVersion", (long long)op->version);
	lb_mods_str(&m, LDAP_MOD_REPLACE, "sipregClaimedBy", &op->req.instance_id);
	lb_mods_int(&m, LDAP_MOD_REPLACE, "sipregClaimedAt", (long long)lb_wall_ms());
	rc = ldap_modify_ext(op->conn->ld, op->aor_dn, m.v, ctrls, NULL, &op->msgid);
	ldap_control_free(ctrl);
	return lb_check_rc(op, rc);
}

static int send_write(struct lb_op *op)
{
	const struct lb_write *w = &op->writes[op->next_write];
	struct mods m = {0};
	struct binding b;
	int rc;

	op->step = ST_WRITE;
	if (w->kind == W_DELETE)
		return lb_check_rc(op, ldap_delete_ext(op->conn->ld, w->dn, NULL, NULL, &op->msgid));
	binding_of_change(op, w->change, &b);
	if (w->kind == W_ADD) {
		const char *id = strchr(w->dn, '=') + 1;
		char rdn[65];

		memcpy(rdn, id, 64);
		rdn[64] = '\0';
		mods_binding(&m, LDAP_MOD_ADD, &b, rdn);
		rc = ldap_add_ext(op->conn->ld, w->dn, m.v, NULL, NULL, &op->msgid);
	} else {
		mods_binding(&m, LDAP_MOD_REPLACE, &b, NULL);
		rc = ldap_modify_ext(op->conn->ld, w->dn, m.v, NULL, NULL, &op->msgid);
	}
	return lb_check_rc(op, rc);
}

static int send_commit(struct lb_op *op)
{
	struct mods m = {0};
	LDAPControl *ctrl = NULL, *ctrls[2] = {NULL, NULL};
	char filter[64];
	int rc, err;

	op->step = ST_COMMIT;
	snprintf(filter, sizeof(filter), "(sipregVersion=%lld)", (long long)op->version);
	err = lb_assertion(op, filter, &ctrl);
	if (err)
		return err;
	ctrls[0] = ctrl;
	lb_mods_int(&m, LDAP_MOD_REPLACE, "sipregCommitted", (long long)op->version);
	rc = ldap_modify_ext(op->conn->ld, op->aor_dn, m.v, ctrls, NULL, &op->msgid);
	ldap_control_free(ctrl);
	return lb_check_rc(op, rc);
}

/* fetch, iterate, unbind: the live bindings (of one AOR, or all). */
int lb_send_bindings_read(struct lb_op *op)
{
	char *aor = NULL, *key = NULL, *filter;
	int err;

	op->step = ST_READ;
	if (op->kind == LB_ITERATE) {
		/* Page by page (RFC 2696): one search would stop at the server's size limit
		 * (500 entries for binds other than slapd's rootdn), silently. Non-critical: a
		 * server without paging answers in one go. */
		LDAPControl *page = NULL, *ctrls[2] = {NULL, NULL};

		filter = lb_str_printf("(&(objectClass=sipregBinding)(sipregExpires>=%lld))",
				       (long long)op->now + 1);
		if (!filter ||
		    ldap_create_page_control(op->conn->ld, LB_PAGE_SIZE,
					     op->cookie.bv_len ? &op->cookie : NULL, 0,
					     &page) != LDAP_SUCCESS) {
			free(filter);
			return ENOMEM;
		}
		ctrls[0] = page;
		err = lb_send_search_ext(op, op->be->conf->bindings_base, LDAP_SCOPE_SUBTREE,
					 filter, binding_attrs, ctrls, 0);
		ldap_control_free(page);
		free(filter);
		return err;
	}
	err = lb_filter_escape(&op->aor, &aor);
	if (!err && op->kind == LB_UNBIND && op->s1.p)
		err = lb_filter_escape(&op->s1, &key);
	if (err) {
		free(aor);
		return err;
	}
	filter = lb_str_printf("(&(objectClass=sipregBinding)(sipregAor=%s)(sipregExpires>=%lld)%s%s%s)",
			    aor, (long long)op->now + 1, key ? "(sipregContactKey=" : "",
			    key ? key : "", key ? ")" : "");
	err = filter ? lb_send_search(op, op->be->conf->bindings_base, LDAP_SCOPE_SUBTREE, filter,
				   binding_attrs)
		     : ENOMEM;
	free(aor);
	free(key);
	free(filter);
	return err;
}

int lb_send_apply_read(struct lb_op *op)
{
	op->step = ST_READ;
	lb_stored_free(op);
	op->aor_exists = false;
	op->version = op->committed = op->claimed_at = 0;
	return lb_send_search(op, op->aor_dn, LDAP_SCOPE_SUBTREE, "(objectClass=*)", binding_attrs);
}

/* Conflict: start over from the read after a short random pause. */
static void apply_retry(struct lb_op *op)
{
	int64_t left = op->deadline_ns - clock_mono_ns();
	uint32_t ms = 1 + lb_jitter(4u << (op->attempts < 5 ? op->attempts : 5));
	struct timeval tv = {.tv_sec = 0, .tv_usec = ms * 1000};

	op->attempts++;
	op->retry = true;
	op->msgid = -1;
	if (left <= (int64_t)ms * CLOCK_NS_PER_MS) {
		op->retry = false;
		lb_op_defer(op, ETIMEDOUT);
		return;
	}
	evtimer_add(op->ev, &tv);
}

static bool apply_next_write(struct lb_op *op)
{
	int err = op->next_write < op->n_writes ? send_write(op) : send_commit(op);

	return err ? lb_op_complete(op, err, NULL, NULL) : true;
}

bool lb_on_apply(struct lb_op *op, LDAPMessage *msg)
{
	LDAP *ld = op->conn->ld;
	int rc, err;

	if (op->step == ST_READ) {
		if (ldap_msgtype(msg) == LDAP_RES_SEARCH_ENTRY) {
			if (lb_entry_is(ld, msg, "sipregAorEntry")) {
				op->aor_exists = true;
				op->version = lb_attr_int(ld, msg, "sipregVersion", 0);
				op->committed = lb_attr_int(ld, msg, "sipregCommitted", 0);
				op->claimed_at = lb_attr_int(ld, msg, "sipregClaimedAt", 0);
			} else if (lb_entry_is(ld, msg, "sipregBinding")) {
				err = stored_add(op, ld, msg);
				if (err)
					return lb_op_complete(op, err, NULL, NULL);
			}
			return true;
		}
		if (ldap_msgtype(msg) != LDAP_RES_SEARCH_RESULT)
			return true;
		op->msgid = -1;
		rc = lb_result_code(op, msg);
		if (rc != LDAP_SUCCESS && rc != LDAP_NO_SUCH_OBJECT)
			return lb_op_complete(op, lb_errno_of(rc), NULL, NULL);
		/* Someone else is writing this AOR: wait for their commit, unless their claim
		 * is older than any op may live (that writer has given up or died). */
		if (op->aor_exists && op->version != op->committed &&
		    lb_wall_ms() - op->claimed_at < (int64_t)op->be->conf->timeout_ms) {
			apply_retry(op);
			return true;
		}
		err = apply_decide(op);
		if (err || op->outcome != REG_OK)
			return lb_op_complete(op, err, NULL, NULL);
		if (op->n_writes == 0)
			return apply_finish(op);
		err = send_claim(op);
		return err ? lb_op_complete(op, err, NULL, NULL) : true;
	}
	if (ldap_msgtype(msg) == LDAP_RES_SEARCH_ENTRY)
		return true;
	op->msgid = -1;
	rc = lb_result_code(op, msg);
	switch (op->step) {
	case ST_CLAIM:
		if (rc == LDAP_ASSERTION_FAILED || rc == LDAP_ALREADY_EXISTS ||
		    rc == LDAP_NO_SUCH_OBJECT) {
			apply_retry(op);
			return true;
		}
		if (rc != LDAP_SUCCESS)
			return lb_op_complete(op, lb_errno_of(rc), NULL, NULL);
		op->next_write = 0;
		return apply_next_write(op);
	case ST_WRITE: {
		struct lb_write *w = &op->writes[op->next_write];

		/* Left behind by a writer that died mid-way: converge on what we decided. */
		if (rc == LDAP_ALREADY_EXISTS && w->kind == W_ADD) {
			w->kind = W_MODIFY;
			return apply_next_write(op);
		}
		if (rc == LDAP_NO_SUCH_OBJECT && w->kind == W_MODIFY) {
			w->kind = W_ADD;
			return apply_next_write(op);
		}
		if (rc != LDAP_SUCCESS && !(rc == LDAP_NO_SUCH_OBJECT && w->kind == W_DELETE))
			return lb_op_complete(op, lb_errno_of(rc), NULL, NULL);
		op->next_write++;
		return apply_next_write(op);
	}
	case ST_COMMIT:
		if (rc != LDAP_SUCCESS) {
			/* Our claim was taken over (we were slower than timeout_ms): what we
			 * wrote may have been overwritten, so nothing is promised. */
			return lb_op_complete(op, rc == LDAP_ASSERTION_FAILED ? EAGAIN : lb_errno_of(rc),
					   NULL, NULL);
		}
		return apply_finish(op);
	default:
		return true;
	}
}

/* The end of one page of a listing: ask for the next while the server hands a cookie. */
static bool iterate_page_done(struct lb_op *op, LDAPMessage *msg)
{
	LDAPControl **ctrls = NULL, *pr;
	int rc = LDAP_OTHER, err;
	ber_int_t estimate = 0;

	if (ldap_parse_result(op->conn->ld, msg, &rc, NULL, NULL, NULL, &ctrls, 0) !=
	    LDAP_SUCCESS)
		rc = LDAP_OTHER;
	if (op->cookie.bv_val)
		ber_memfree(op->cookie.bv_val);
	op->cookie = (struct berval){0};
	pr = rc == LDAP_SUCCESS ? ldap_control_find(LDAP_CONTROL_PAGEDRESULTS, ctrls, NULL)
				: NULL;
	if (pr && ldap_parse_pageresponse_control(op->conn->ld, pr, &estimate, &op->cookie) !=
		      LDAP_SUCCESS)
		rc = LDAP_OTHER;
	ldap_controls_free(ctrls);
	if (rc != LDAP_SUCCESS) {
		/* A listing cut short must not look complete. */
		if (rc == LDAP_SIZELIMIT_EXCEEDED || rc == LDAP_ADMINLIMIT_EXCEEDED)
			log_limited(&op->be->ll_conn, LOG_WARN,
				    "ldap: listing the bindings: %s (the server limits paged "
				    "searches of this bind DN)", ldap_err2string(rc));
		return lb_op_complete(op, lb_errno_of(rc), NULL, NULL);
	}
	if (!op->cookie.bv_len)
		return lb_op_complete(op, 0, NULL, NULL);
	lb_op_rearm(op);
	err = lb_send_bindings_read(op);
	return err ? lb_op_complete(op, err, NULL, NULL) : true;
}

bool lb_on_read(struct lb_op *op, LDAPMessage *msg)
{
	LDAP *ld = op->conn->ld;
	int rc, err;

	if (ldap_msgtype(msg) == LDAP_RES_SEARCH_ENTRY) {
		if (op->kind == LB_UNBIND && op->step == ST_WRITE)
			return true;
		err = stored_add(op, ld, msg);
		if (err)
			return lb_op_complete(op, err, NULL, NULL);
		if (op->kind == LB_ITERATE) {
			/* Delivered as it arrives: a listing never holds the whole tree. */
			struct lb_be *be = op->be;
			bool alive = true;
			struct lb_stored *s = &op->stored[op->n_stored - 1];

			be->alive = &alive;
			if (s->live)
				op->cb.iterate(0, &s->b, op->arg);
			if (!alive)
				return false;
			be->alive = NULL;
			lb_stored_free(op);
		}
		return true;
	}
	if (ldap_msgtype(msg) != LDAP_RES_SEARCH_RESULT && op->step == ST_READ)
		return true;
	op->msgid = -1;
	if (op->kind == LB_ITERATE)
		return iterate_page_done(op, msg);
	rc = lb_result_code(op, msg);
	if (op->kind == LB_UNBIND) {
		if (op->step == ST_READ) {
			if (rc != LDAP_SUCCESS)
				return lb_op_complete(op, lb_errno_of(rc), NULL, NULL);
			if (op->n_stored == 0)
				return lb_op_complete(op, ENOENT, NULL, NULL);
			op->next_write = 0;
		} else if (rc != LDAP_SUCCESS && rc != LDAP_NO_SUCH_OBJECT) {
			return lb_op_complete(op, lb_errno_of(rc), NULL, NULL);
		} else {
			op->next_write++;
		}
		if (op->next_write >= op->n_stored)
			return lb_op_complete(op, 0, NULL, NULL);
		op->step = ST_WRITE;
		err = lb_check_rc(op, ldap_delete_ext(op->conn->ld, op->stored[op->next_write].dn,
						   NULL, NULL, &op->msgid));
		return err ? lb_op_complete(op, err, NULL, NULL) : true;
	}
	if (rc != LDAP_SUCCESS)
		return lb_op_complete(op, lb_errno_of(rc), NULL, NULL);
	if (op->kind == LB_FETCH) {
		struct binding *v = calloc(op->n_stored + 1, sizeof(*v));
		struct binding_set set;
		size_t n = 0;
		bool alive;

		if (!v)
			return lb_op_complete(op, ENOMEM, NULL, NULL);
		for (size_t i = 0; i < op->n_stored; i++) {
			if (op->stored[i].live)
				v[n++] = op->stored[i].b;
		}
		if (n > 1)
			qsort(v, n, sizeof(*v), binding_cmp);
		set = lb_set_of(op, v, n);
		alive = lb_op_complete(op, 0, &set, NULL);
		free(v);
		return alive;
	}
	return lb_op_complete(op, 0, NULL, NULL);
}
