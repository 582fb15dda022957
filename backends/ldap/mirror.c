/* Inside the ldap backend: the in-memory copy of the users, fed by RFC 4533
 * refreshAndPersist on the sync connection (or a re-read every refresh_s). */
#include "internal.h"

void lb_user_unindex_free(struct lb_be *be, struct lb_user *u)
{
	hmap_remove(&be->users, &u->by_name);
	hmap_remove(&be->uuids, &u->by_uuid);
	for (size_t i = 0; i < u->n_aliases; i++) {
		hmap_remove(&be->aliases, &u->aliases[i].node);
		lb_str_free(&u->aliases[i].s);
	}
	free(u->aliases);
	free(u->alias_strs);
	for (size_t i = 0; i < u->n_domains; i++)
		free(u->domains[i]);
	free(u->domains);
	lb_str_free(&u->uuid);
	lb_str_free(&u->name);
	if (u->password.p)
		memset((char *)u->password.p, 0, u->password.len);
	lb_str_free(&u->password);
	memset(u->ha1_md5, 0, sizeof(u->ha1_md5));
	memset(u->ha1_sha256, 0, sizeof(u->ha1_sha256));
	free(u);
}

static struct lb_user *user_by_uuid(struct lb_be *be, const struct sip_str *uuid)
{
	uint64_t h = hmap_hash(uuid->p, uuid->len);

	for (struct hmap_node *n = hmap_first(&be->uuids, h); n; n = hmap_next(n, h)) {
		struct lb_user *u = hmap_entry(n, struct lb_user, by_uuid);

		if (sip_str_eq(&u->uuid, uuid))
			return u;
	}
	return NULL;
}

/* A hex HA1 of want digits, "{md5}"-style prefixes (Asterisk trees) dropped. */
static void ha1_take(char *dst, const struct berval *bv, size_t want)
{
	const char *p = bv ? bv->bv_val : NULL;
	size_t len = bv ? bv->bv_len : 0;

	dst[0] = '\0';
	if (p && len > 0 && p[0] == '{') {
		const char *end = memchr(p, '}', len);

		if (!end)
			return;
		len -= (size_t)(end + 1 - p);
		p = end + 1;
	}
	if (!p || len != want)
		return;
	for (size_t i = 0; i < len; i++) {
		char c = p[i];

		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
			return;
		dst[i] = (char)(c >= 'A' && c <= 'F' ? c - 'A' + 'a' : c);
	}
	dst[len] = '\0';
}

static bool bv_true(const struct berval *bv, bool dflt)
{
	if (!bv)
		return dflt;
	return bv->bv_len == 4 && strncasecmp(bv->bv_val, "TRUE", 4) == 0;
}

/* The domain of a SIP URI value "sip:user@domain;params", lower case, or NULL. */
static char *uri_domain(const struct berval *bv)
{
	const char *p = bv->bv_val, *end = p + bv->bv_len, *at, *d;
	char *out;
	size_t n;

	at = memchr(p, '@', bv->bv_len);
	d = at ? at + 1 : (bv->bv_len > 4 && strncasecmp(p, "sip:", 4) == 0 ? p + 4 : NULL);
	if (!d)
		return NULL;
	for (n = 0; d + n < end && !strchr(";>?: ", d[n]); n++)
		;
	if (n == 0)
		return NULL;
	out = malloc(n + 1);
	if (!out)
		return NULL;
	for (size_t i = 0; i < n; i++)
		out[i] = (char)((d[i] >= 'A' && d[i] <= 'Z') ? d[i] - 'A' + 'a' : d[i]);
	out[n] = '\0';
	return out;
}

/* Insert or replace the mirror's record of entry e (uuid: its entryUUID bytes). */
static int mirror_put(struct lb_be *be, LDAP *ld, LDAPMessage *e, const struct sip_str *uuid)
{
	const struct ldap_attr_map *m = &be->conf->attrs;
	struct berval **vals = NULL, *v;
	struct lb_user *u, *old;
	int err = ENOMEM;

	v = lb_first_value(ld, e, m->user, &vals);
	if (!v || v->bv_len == 0) {
		ldap_value_free_len(vals);
		/* No user name: not a user for us (and no longer one if it was). */
		old = user_by_uuid(be, uuid);
		if (old)
			lb_user_unindex_free(be, old);
		return 0;
	}
	u = calloc(1, sizeof(*u));
	if (!u || lb_str_dup(&u->name, v->bv_val, v->bv_len) || lb_str_dup(&u->uuid, uuid->p, uuid->len))
		goto fail;
	ldap_value_free_len(vals);
	vals = NULL;
	v = lb_first_value(ld, e, m->password, &vals);
	if (v && lb_str_dup(&u->password, v->bv_val, v->bv_len))
		goto fail;
	ldap_value_free_len(vals);
	ha1_take(u->ha1_md5, lb_first_value(ld, e, m->ha1_md5, &vals), 32);
	ldap_value_free_len(vals);
	ha1_take(u->ha1_sha256, lb_first_value(ld, e, m->ha1_sha256, &vals), 64);
	ldap_value_free_len(vals);
	u->enabled = bv_true(lb_first_value(ld, e, m->enabled, &vals), true);
	ldap_value_free_len(vals);
	u->auth_off = bv_true(lb_first_value(ld, e, m->auth_off, &vals), false);
	ldap_value_free_len(vals);
	v = lb_first_value(ld, e, m->max_contacts, &vals);
	{
		int64_t mc = lb_bv_int(v, 0);

		u->max_contacts = mc > 0 && mc <= UINT32_MAX ? (uint32_t)mc : 0;
	}
	ldap_value_free_len(vals);
	vals = m->uri ? ldap_get_values_len(ld, e, m->uri) : NULL;
	for (size_t i = 0; vals && vals[i]; i++) {
		char *d = uri_domain(vals[i]), **nd;

		if (!d)
			continue;
		nd = realloc(u->domains, (u->n_domains + 1) * sizeof(*nd));
		if (!nd) {
			free(d);
			goto fail;
		}
		u->domains = nd;
		u->domains[u->n_domains++] = d;
	}
	ldap_value_free_len(vals);
	vals = m->alias ? ldap_get_values_len(ld, e, m->alias) : NULL;
	{
		size_t n = vals ? (size_t)ldap_count_values_len(vals) : 0;

		if (n) {
			u->aliases = calloc(n, sizeof(*u->aliases));
			u->alias_strs = calloc(n, sizeof(*u->alias_strs));
			if (!u->aliases || !u->alias_strs)
				goto fail;
		}
		for (size_t i = 0; i < n; i++) {
			if (lb_str_dup(&u->aliases[i].s, vals[i]->bv_val, vals[i]->bv_len))
				goto fail;
			u->aliases[i].owner = u;
			u->alias_strs[i] = u->aliases[i].s;
			u->n_aliases = i + 1;
		}
	}
	ldap_value_free_len(vals);
	vals = NULL;
	old = user_by_uuid(be, uuid);
	if (old)
		lb_user_unindex_free(be, old);
	u->gen = be->gen;
	hmap_insert(&be->users, &u->by_name, hmap_hash(u->name.p, u->name.len));
	hmap_insert(&be->uuids, &u->by_uuid, hmap_hash(u->uuid.p, u->uuid.len));
	for (size_t i = 0; i < u->n_aliases; i++)
		hmap_insert(&be->aliases, &u->aliases[i].node,
			    hmap_hash(u->aliases[i].s.p, u->aliases[i].s.len));
	return 0;
fail:
	ldap_value_free_len(vals);
	if (u) {
		for (size_t i = 0; i < u->n_aliases; i++)
			lb_str_free(&u->aliases[i].s);
		free(u->aliases);
		free(u->alias_strs);
		for (size_t i = 0; i < u->n_domains; i++)
			free(u->domains[i]);
		free(u->domains);
		lb_str_free(&u->name);
		lb_str_free(&u->uuid);
		lb_str_free(&u->password);
		free(u);
	}
	return err;
}

void lb_mirror_del(struct lb_be *be, const struct sip_str *uuid)
{
	struct lb_user *u = user_by_uuid(be, uuid);

	if (u)
		lb_user_unindex_free(be, u);
}

/* Put an entry read with its entryUUID attribute (a re-read, a read-back). */
int lb_mirror_put_plain(struct lb_be *be, LDAP *ld, LDAPMessage *e)
{
	struct berval **vals = ldap_get_values_len(ld, e, "entryUUID");
	unsigned char raw[16];
	struct sip_str uuid = {.p = (const char *)raw, .len = sizeof(raw)};
	int err = 0;

	if (vals && vals[0] && lb_uuid_parse(vals[0], raw))
		err = mirror_put(be, ld, e, &uuid);
	ldap_value_free_len(vals);
	return err;
}

static bool user_in_domain(const struct lb_user *u, const struct sip_str *domain)
{
	if (u->n_domains == 0)
		return true;
	for (size_t i = 0; i < u->n_domains; i++) {
		if (strlen(u->domains[i]) == domain->len &&
		    strncasecmp(u->domains[i], domain->p, domain->len) == 0)
			return true;
	}
	return false;
}

/* The user named user (bytes, exact) in domain, else the owner of alias user@domain. */
static const struct lb_user *mirror_find(struct lb_be *be, const struct sip_str *user,
					 const struct sip_str *domain, bool *by_alias)
{
	uint64_t h = hmap_hash(user->p, user->len);
	const struct lb_user *any = NULL;
	char buf[512];

	*by_alias = false;
	for (struct hmap_node *n = hmap_first(&be->users, h); n; n = hmap_next(n, h)) {
		const struct lb_user *u = hmap_entry(n, struct lb_user, by_name);

		if (!sip_str_eq(&u->name, user) || !user_in_domain(u, domain))
			continue;
		if (u->n_domains)
			return u; /* provisioned for this domain: before an every-domain one */
		any = u;
	}
	if (any || user->len + domain->len + 1 > sizeof(buf))
		return any;
	memcpy(buf, user->p, user->len);
	buf[user->len] = '@';
	memcpy(buf + user->len + 1, domain->p, domain->len);
	h = hmap_hash(buf, user->len + 1 + domain->len);
	for (struct hmap_node *n = hmap_first(&be->aliases, h); n; n = hmap_next(n, h)) {
		const struct lb_alias *a = hmap_entry(n, struct lb_alias, node);

		if (a->s.len == user->len + 1 + domain->len &&
		    memcmp(a->s.p, buf, a->s.len) == 0) {
			*by_alias = true;
			return a->owner;
		}
	}
	return NULL;
}

static void dir_user_of(const struct lb_user *u, const struct sip_str *domain,
			struct dir_user *d)
{
	memset(d, 0, sizeof(*d));
	d->username = u->name;
	d->domain = *domain;
	d->ha1_md5 = sip_str_c(u->ha1_md5);
	d->ha1_sha256 = sip_str_c(u->ha1_sha256);
	d->password = u->password;
	d->enabled = u->enabled;
	d->auth_off = u->auth_off;
	d->max_contacts = u->max_contacts;
	d->aliases = u->alias_strs;
	d->n_aliases = u->n_aliases;
}

/* Answer a find from the mirror (from the op's timer). */
bool lb_find_answer(struct lb_op *op)
{
	struct lb_be *be = op->be;
	const struct lb_user *u;
	struct dir_user d;
	bool by_alias;

	/* LDAP strings are UTF-8 without NUL: no such user can exist, and nothing is asked. */
	if (!lb_utf8_valid(op->s1.p, op->s1.len))
		return lb_op_complete(op, 0, NULL, NULL);
	u = mirror_find(be, &op->s1, &op->s2, &by_alias);
	if (!u)
		return lb_op_complete(op, 0, NULL, NULL);
	if (by_alias && u->n_domains) {
		struct sip_str dom = sip_str_c(u->domains[0]);

		dir_user_of(u, &dom, &d);
	} else {
		dir_user_of(u, &op->s2, &d);
	}
	return lb_op_complete(op, 0, NULL, &d);
}

/* Answer a user listing from the mirror. */
bool lb_user_iter_answer(struct lb_op *op)
{
	struct lb_be *be = op->be;
	struct hmap_node *n, *tmp;
	bool alive = true;
	size_t i;

	be->alive = &alive;
	HMAP_FOREACH_SAFE(&be->users, n, tmp, i)
	{
		const struct lb_user *u = hmap_entry(n, struct lb_user, by_name);
		struct sip_str dom = u->n_domains ? sip_str_c(u->domains[0]) : empty_str;
		struct dir_user d;

		dir_user_of(u, &dom, &d);
		op->cb.user_iter(0, &d, op->arg);
		if (!alive)
			return false;
	}
	be->alive = NULL;
	return lb_op_complete(op, 0, NULL, NULL);
}

/* The first complete load (or a reload): drop what the refresh did not see, answer the
 * finds that waited. */
static void mirror_refreshed(struct lb_be *be)
{
	struct hmap_node *n, *tmp;
	size_t i;

	HMAP_FOREACH_SAFE(&be->users, n, tmp, i)
	{
		struct lb_user *u = hmap_entry(n, struct lb_user, by_name);

		if (u->gen != be->gen)
			lb_user_unindex_free(be, u);
	}
	be->dir_ready = true;
	while (be->dir_wait) {
		struct lb_op *op = be->dir_wait;

		be->dir_wait = op->qnext;
		op->dir_waiting = false;
		lb_op_defer(op, 0);
	}
}

const char **lb_user_attrs(const struct lb_be *be, const char **a)
{
	const struct ldap_attr_map *m = &be->conf->attrs;
	size_t n = 0;

	a[n++] = m->user;
	if (m->password)
		a[n++] = m->password;
	if (m->uri)
		a[n++] = m->uri;
	if (m->ha1_md5)
		a[n++] = m->ha1_md5;
	if (m->ha1_sha256)
		a[n++] = m->ha1_sha256;
	if (m->enabled)
		a[n++] = m->enabled;
	if (m->auth_off)
		a[n++] = m->auth_off;
	if (m->max_contacts)
		a[n++] = m->max_contacts;
	if (m->alias)
		a[n++] = m->alias;
	a[n++] = "entryUUID";
	a[n++] = "objectClass";
	a[n] = NULL;
	return a;
}

/* Start a refresh of the mirror on the sync connection: refreshAndPersist, or a plain
 * re-read where the server refused the sync control. */
void lb_sync_start(struct lb_conn *c)
{
	struct lb_be *be = c->be;
	const char *attrs[16];
	LDAPControl ctrl, *ctrls[2] = {&ctrl, NULL};
	BerElement *ber = NULL;
	struct berval *val = NULL;
	bool persist = be->conf->sync && !be->sync_refused;
	int rc;

	be->gen++;
	if (persist) {
		ber = ber_alloc_t(LBER_USE_DER);
		if (!ber || ber_printf(ber, "{e}", (ber_int_t)LDAP_SYNC_REFRESH_AND_PERSIST) < 0 ||
		    ber_flatten(ber, &val) < 0) {
			ber_free(ber, 1);
			lb_conn_fail(c, "out of memory");
			return;
		}
		ber_free(ber, 1);
		ctrl.ldctl_oid = LDAP_CONTROL_SYNC;
		ctrl.ldctl_value = *val;
		ctrl.ldctl_iscritical = 1;
	}
	rc = ldap_search_ext(c->ld, be->conf->users_base, LDAP_SCOPE_SUBTREE, be->conf->filter,
			     (char **)lb_user_attrs(be, attrs), 0, persist ? ctrls : NULL, NULL, NULL,
			     0, &c->msgid);
	ber_bvfree(val);
	if (rc != LDAP_SUCCESS) {
		lb_conn_fail(c, ldap_err2string(rc));
		return;
	}
	be->refreshing = true;
}

static void sync_entry(struct lb_conn *c, LDAPMessage *msg)
{
	struct lb_be *be = c->be;
	LDAPControl **ctrls = NULL, *st;
	int err = 0;

	if (ldap_get_entry_controls(c->ld, msg, &ctrls) == LDAP_SUCCESS &&
	    (st = ldap_control_find(LDAP_CONTROL_SYNC_STATE, ctrls, NULL)) != NULL) {
		BerElement *ber = ber_init(&st->ldctl_value);
		struct berval uuid = {0};
		ber_int_t state = -1;

		if (ber && ber_scanf(ber, "{em", &state, &uuid) != LBER_ERROR) {
			struct sip_str u = {.p = uuid.bv_val, .len = uuid.bv_len};

			if (state == LDAP_SYNC_DELETE)
				lb_mirror_del(be, &u);
			else
				err = mirror_put(be, c->ld, msg, &u);
		}
		ber_free(ber, 1);
	} else {
		err = lb_mirror_put_plain(be, c->ld, msg);
	}
	ldap_controls_free(ctrls);
	if (err)
		log_limited(&be->ll_conn, LOG_ERR, "ldap: out of memory mirroring a user");
}

/* syncInfo: the end of the refresh phase (refreshDelete/refreshPresent with refreshDone). */
static void sync_info(struct lb_conn *c, LDAPMessage *msg)
{
	struct berval *data = NULL;
	char *oid = NULL;
	BerElement *ber;
	ber_tag_t tag;
	ber_len_t len;

	if (ldap_parse_intermediate(c->ld, msg, &oid, &data, NULL, 0) != LDAP_SUCCESS || !oid ||
	    strcmp(oid, LDAP_SYNC_INFO) != 0 || !data)
		goto out;
	ber = ber_init(data);
	if (!ber)
		goto out;
	tag = ber_peek_tag(ber, &len);
	if (tag == LDAP_TAG_SYNC_REFRESH_DELETE || tag == LDAP_TAG_SYNC_REFRESH_PRESENT) {
		ber_int_t done = 1;

		ber_skip_tag(ber, &len);
		if (ber_peek_tag(ber, &len) == LDAP_TAG_SYNC_COOKIE) {
			struct berval cookie;

			ber_skip_element(ber, &cookie);
		}
		if (ber_peek_tag(ber, &len) == LBER_BOOLEAN)
			ber_scanf(ber, "b", &done);
		if (done)
			mirror_refreshed(c->be);
	}
	ber_free(ber, 1);
out:
	ldap_memfree(oid);
	ber_bvfree(data);
}

static void sync_result(struct lb_conn *c, LDAPMessage *msg)
{
	struct lb_be *be = c->be;
	int rc = LDAP_OTHER;

	ldap_parse_result(c->ld, msg, &rc, NULL, NULL, NULL, NULL, 0);
	c->msgid = -1;
	be->refreshing = false;
	if (be->conf->sync && !be->sync_refused &&
	    (rc == LDAP_UNAVAILABLE_CRITICAL_EXTENSION || rc == LDAP_PROTOCOL_ERROR ||
	     rc == LDAP_UNWILLING_TO_PERFORM)) {
		log_warn("ldap: the server refuses content synchronisation (%s): re-reading the "
			 "users every %u s",
			 ldap_err2string(rc), be->conf->refresh_s);
		be->sync_refused = true;
		lb_sync_start(c);
		return;
	}
	if (rc == LDAP_SIZELIMIT_EXCEEDED || rc == LDAP_ADMINLIMIT_EXCEEDED) {
		/* A partial copy would answer 404 for users that exist: never ready on it. */
		log_limited(&be->ll_conn, LOG_ERR,
			    "ldap: the users under %s exceed the server's size limit for %s: the "
			    "user mirror cannot load; give that bind DN size=unlimited in slapd's "
			    "limits (docs/ldap.md, Limits)",
			    be->conf->users_base, be->conf->bind_dn ? be->conf->bind_dn : "this bind");
		lb_conn_fail(c, ldap_err2string(rc));
		return;
	}
	if (rc != LDAP_SUCCESS) {
		lb_conn_fail(c, ldap_err2string(rc));
		return;
	}
	mirror_refreshed(be);
	lb_conn_arm(c, be->conf->refresh_s * 1000u);
}

void lb_sync_msg(struct lb_conn *c, LDAPMessage *msg)
{
	if (ldap_msgid(msg) != c->msgid)
		return;
	switch (ldap_msgtype(msg)) {
	case LDAP_RES_SEARCH_ENTRY:
		sync_entry(c, msg);
		break;
	case LDAP_RES_INTERMEDIATE:
		sync_info(c, msg);
		break;
	case LDAP_RES_SEARCH_RESULT:
		sync_result(c, msg);
		break;
	default:
		break;
	}
}
