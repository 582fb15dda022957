/* Inside the ldap backend: provisioning: user_put/user_del find the user's entry, write
 * it, and read it back into the mirror. */
#include "internal.h"

/* put/del: find the user's entry by name (and domain: a URI in it, or none at all). */
int lb_send_user_lookup(struct lb_op *op)
{
	const struct ldap_conf *c = op->be->conf;
	char *u = NULL, *uri = NULL, *filter;
	struct sip_str sipuri;
	const char *attrs[16];
	char *raw = NULL;
	int err;

	op->step = ST_LOOKUP;
	raw = lb_str_printf("sip:%.*s@%.*s", (int)op->user.username.len, op->user.username.p,
			 (int)op->user.domain.len, op->user.domain.p);
	if (!raw)
		return ENOMEM;
	sipuri = sip_str_c(raw);
	err = lb_filter_escape(&op->user.username, &u);
	if (!err)
		err = lb_filter_escape(&sipuri, &uri);
	free(raw);
	if (err) {
		free(u);
		return err;
	}
	if (c->attrs.uri)
		filter = lb_str_printf("(&%s(%s=%s)(|(%s=%s)(!(%s=*))))", c->filter, c->attrs.user, u,
				    c->attrs.uri, uri, c->attrs.uri);
	else
		filter = lb_str_printf("(&%s(%s=%s))", c->filter, c->attrs.user, u);
	err = filter ? lb_send_search(op, c->users_base, LDAP_SCOPE_SUBTREE, filter,
				   lb_user_attrs(op->be, attrs))
		     : ENOMEM;
	free(u);
	free(uri);
	free(filter);
	return err;
}

static int send_user_write(struct lb_op *op)
{
	const struct ldap_attr_map *a = &op->be->conf->attrs;
	struct mods m = {0};
	int mode = op->mode == DIR_PUT_CREATE ? LDAP_MOD_ADD : LDAP_MOD_REPLACE;
	char *rdn = NULL, *uid = NULL, *sipuri = NULL;
	struct sip_str id;
	int err = 0, rc;
	LDAPMod am;
	size_t n_alias = op->user.n_aliases;
	struct berval *av = NULL, **avp = NULL;

	op->step = ST_PUT;
	if (op->kind == LB_DEL)
		return lb_check_rc(op, ldap_delete_ext(op->conn->ld, op->dn, NULL, NULL, &op->msgid));
	uid = lb_str_printf("%.*s@%.*s", (int)op->user.username.len, op->user.username.p,
			 (int)op->user.domain.len, op->user.domain.p);
	sipuri = lb_str_printf("sip:%s", uid ? uid : "");
	if (!uid || !sipuri) {
		err = ENOMEM;
		goto out;
	}
	id = sip_str_c(uid);
	if (mode == LDAP_MOD_ADD) {
		static const char c1[] = "commObject", c2[] = "SIPIdentity", c3[] = "sipregUser";

		err = lb_dn_escape(&id, &rdn);
		if (err)
			goto out;
		free(op->dn);
		op->dn = lb_str_printf("commUniqueId=%s,%s", rdn, op->be->conf->users_base);
		if (!op->dn) {
			err = ENOMEM;
			goto out;
		}
		/* One attribute, three values: an add names each attribute once. */
		lb_mods_bytes(&m, mode, "objectClass", c1, sizeof(c1) - 1);
		m.bv[0][1] = (struct berval){.bv_val = (char *)c2, .bv_len = sizeof(c2) - 1};
		m.bvp[0][1] = &m.bv[0][1];
		m.bv_extra = (struct berval){.bv_val = (char *)c3, .bv_len = sizeof(c3) - 1};
		m.bvp[0][2] = &m.bv_extra;
		m.bvp[0][3] = NULL;
		lb_mods_str(&m, mode, "commUniqueId", &id);
		lb_mods_str(&m, mode, a->user, &op->user.username);
	} else if (!op->has_sipreg_class) {
		static const char c3[] = "sipregUser";

		lb_mods_bytes(&m, LDAP_MOD_ADD, "objectClass", c3, sizeof(c3) - 1);
	}
	if (a->uri && op->user.domain.len)
		lb_mods_bytes(&m, mode, a->uri, sipuri, strlen(sipuri));
	if (a->password)
		lb_mods_str(&m, mode, a->password, &op->user.password);
	if (a->ha1_md5)
		lb_mods_str(&m, mode, a->ha1_md5, &op->user.ha1_md5);
	if (a->ha1_sha256)
		lb_mods_str(&m, mode, a->ha1_sha256, &op->user.ha1_sha256);
	if (a->enabled)
		lb_mods_bytes(&m, mode, a->enabled, op->user.enabled ? "TRUE" : "FALSE",
			   op->user.enabled ? 4 : 5);
	if (a->auth_off)
		lb_mods_bytes(&m, mode, a->auth_off, op->user.auth_off ? "TRUE" : "FALSE",
			   op->user.auth_off ? 4 : 5);
	if (a->max_contacts && op->user.max_contacts)
		lb_mods_int(&m, mode, a->max_contacts, op->user.max_contacts);
	else if (a->max_contacts && mode == LDAP_MOD_REPLACE)
		lb_mods_bytes(&m, mode, a->max_contacts, NULL, 0);
	if (a->alias && (n_alias || mode == LDAP_MOD_REPLACE)) {
		/* Every alias in one modification (multi-valued), as many as were given. */
		av = calloc(n_alias + 1, sizeof(*av));
		avp = calloc(n_alias + 1, sizeof(*avp));
		if (!av || !avp) {
			err = ENOMEM;
			goto out;
		}
		for (size_t i = 0; i < n_alias; i++) {
			av[i].bv_val = (char *)op->aliases[i].p;
			av[i].bv_len = op->aliases[i].len;
			avp[i] = &av[i];
		}
		am.mod_op = mode | LDAP_MOD_BVALUES;
		am.mod_type = a->alias;
		am.mod_bvalues = avp;
		m.v[m.n++] = &am;
		m.v[m.n] = NULL;
	}
	if (mode == LDAP_MOD_ADD)
		rc = ldap_add_ext(op->conn->ld, op->dn, m.v, NULL, NULL, &op->msgid);
	else
		rc = ldap_modify_ext(op->conn->ld, op->dn, m.v, NULL, NULL, &op->msgid);
	err = lb_check_rc(op, rc);
out:
	free(av);
	free(avp);
	free(rdn);
	free(uid);
	free(sipuri);
	return err;
}

static int send_readback(struct lb_op *op)
{
	const char *attrs[16];

	op->step = ST_READBACK;
	return lb_send_search(op, op->dn, LDAP_SCOPE_BASE, "(objectClass=*)",
			   lb_user_attrs(op->be, attrs));
}

/* put with aliases: is any of them held by another entry? Searched in LDAP (the truth),
 * not the mirror, which may lag a write made elsewhere by a moment. */
static int send_alias_check(struct lb_op *op)
{
	static const char *const no_attrs[] = {"1.1", NULL};
	const struct ldap_conf *c = op->be->conf;
	size_t cap = 64, len = 0;
	char *filter = malloc(cap), *v = NULL;
	int err = filter ? 0 : ENOMEM;

	op->step = ST_ALIASES;
	op->alias_clash = false;
	for (size_t i = 0; !err && i <= op->user.n_aliases + 1; i++) {
		const char *piece;
		char *tmp = NULL;
		size_t n;

		if (i == 0)
			tmp = lb_str_printf("(&%s(|", c->filter);
		else if (i <= op->user.n_aliases)
			tmp = (err = lb_filter_escape(&op->aliases[i - 1], &v)) ? NULL
			      : lb_str_printf("(%s=%s)", c->attrs.alias, v);
		else
			tmp = strdup("))");
		free(v);
		v = NULL;
		if (!tmp) {
			err = err ? err : ENOMEM;
			break;
		}
		piece = tmp;
		n = strlen(piece);
		if (len + n + 1 > cap) {
			char *nf;

			while (len + n + 1 > cap)
				cap *= 2;
			nf = realloc(filter, cap);
			if (!nf) {
				free(tmp);
				err = ENOMEM;
				break;
			}
			filter = nf;
		}
		memcpy(filter + len, piece, n + 1);
		len += n;
		free(tmp);
	}
	if (!err)
		err = lb_send_search(op, c->users_base, LDAP_SCOPE_SUBTREE, filter, no_attrs);
	free(filter);
	return err;
}

/* The lookup found what the put needs: check the aliases first when there are any. */
static int send_after_lookup(struct lb_op *op)
{
	if (op->kind == LB_PUT && op->user.n_aliases && op->be->conf->attrs.alias)
		return send_alias_check(op);
	return send_user_write(op);
}

bool lb_on_user(struct lb_op *op, LDAPMessage *msg)
{
	LDAP *ld = op->conn->ld;
	int rc, err;

	if (ldap_msgtype(msg) == LDAP_RES_SEARCH_ENTRY) {
		if (op->step == ST_LOOKUP) {
			char *dn = ldap_get_dn(ld, msg);

			op->found++;
			free(op->dn);
			op->dn = dn ? strdup(dn) : NULL;
			ldap_memfree(dn);
			op->has_sipreg_class = lb_entry_is(ld, msg, "sipregUser");
			if (op->kind == LB_DEL) {
				struct berval **vals = ldap_get_values_len(ld, msg, "entryUUID");
				unsigned char raw[16];

				if (vals && vals[0] && lb_uuid_parse(vals[0], raw))
					lb_str_dup(&op->s2, raw, sizeof(raw));
				ldap_value_free_len(vals);
			}
		} else if (op->step == ST_ALIASES) {
			char *dn = ldap_get_dn(ld, msg);

			/* Another entry (or, for a create, any entry) already holds one. */
			if (!dn || !op->dn || op->mode == DIR_PUT_CREATE ||
			    strcasecmp(dn, op->dn) != 0)
				op->alias_clash = true;
			ldap_memfree(dn);
		} else if (op->step == ST_READBACK) {
			if (lb_mirror_put_plain(op->be, ld, msg))
				return lb_op_complete(op, ENOMEM, NULL, NULL);
		}
		return true;
	}
	if (ldap_msgtype(msg) != LDAP_RES_SEARCH_RESULT && op->step != ST_PUT)
		return true;
	op->msgid = -1;
	rc = lb_result_code(op, msg);
	switch (op->step) {
	case ST_LOOKUP:
		if (rc != LDAP_SUCCESS)
			return lb_op_complete(op, lb_errno_of(rc), NULL, NULL);
		if (op->kind == LB_PUT && op->mode == DIR_PUT_CREATE && op->found)
			return lb_op_complete(op, EEXIST, NULL, NULL);
		if ((op->kind == LB_DEL || op->mode == DIR_PUT_UPDATE) && !op->found)
			return lb_op_complete(op, ENOENT, NULL, NULL);
		if (op->found > 1)
			return lb_op_complete(op, EEXIST, NULL, NULL); /* ambiguous: refuse */
		err = op->dn || op->kind == LB_PUT ? send_after_lookup(op) : ENOMEM;
		return err ? lb_op_complete(op, err, NULL, NULL) : true;
	case ST_ALIASES:
		if (rc != LDAP_SUCCESS)
			return lb_op_complete(op, lb_errno_of(rc), NULL, NULL);
		if (op->alias_clash)
			return lb_op_complete(op, EEXIST, NULL, NULL);
		err = send_user_write(op);
		return err ? lb_op_complete(op, err, NULL, NULL) : true;
	case ST_PUT:
		if (rc != LDAP_SUCCESS) {
			log_warn("ldap: writing a user entry: %s", ldap_err2string(rc));
			return lb_op_complete(op, lb_errno_of(rc), NULL, NULL);
		}
		if (op->kind == LB_DEL) {
			/* The mirror forgets at once: the next find must not see the user. */
			if (op->s2.len == 16)
				lb_mirror_del(op->be, &op->s2);
			return lb_op_complete(op, 0, NULL, NULL);
		}
		err = send_readback(op);
		return err ? lb_op_complete(op, err, NULL, NULL) : true;
	case ST_READBACK:
		return lb_op_complete(op, lb_errno_of(rc), NULL, NULL);
	default:
		return true;
	}
}
