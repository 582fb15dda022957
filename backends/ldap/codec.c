/* Inside the ldap backend: reading attribute values of entries, building modification
 * lists and assertion controls, sending searches and mapping result codes to errnos. */
#include "internal.h"

int64_t lb_bv_int(const struct berval *bv, int64_t dflt)
{
	char buf[LB_NUM_MAX + 1];
	char *end;
	long long v;

	if (!bv || bv->bv_len == 0 || bv->bv_len > LB_NUM_MAX)
		return dflt;
	memcpy(buf, bv->bv_val, bv->bv_len);
	buf[bv->bv_len] = '\0';
	v = strtoll(buf, &end, 10);
	return *end ? dflt : (int64_t)v;
}

/* The first value of attr in entry e, or NULL; *vals_r to free with ldap_value_free_len. */
struct berval *lb_first_value(LDAP *ld, LDAPMessage *e, const char *attr,
				  struct berval ***vals_r)
{
	*vals_r = attr ? ldap_get_values_len(ld, e, attr) : NULL;
	return *vals_r && (*vals_r)[0] ? (*vals_r)[0] : NULL;
}

/* The 16 bytes of a textual entryUUID (8-4-4-4-12 hex), as the sync control carries it. */
bool lb_uuid_parse(const struct berval *bv, unsigned char out[16])
{
	size_t k = 0;

	for (size_t i = 0; bv && i < bv->bv_len && k < 32; i++) {
		char c = bv->bv_val[i];
		int d = c >= '0' && c <= '9' ? c - '0'
			: c >= 'a' && c <= 'f' ? c - 'a' + 10
			: c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;

		if (c == '-')
			continue;
		if (d < 0)
			return false;
		if (k % 2 == 0)
			out[k / 2] = (unsigned char)(d << 4);
		else
			out[k / 2] |= (unsigned char)d;
		k++;
	}
	return k == 32;
}

int lb_attr_str(LDAP *ld, LDAPMessage *e, const char *attr, struct sip_str *dst)
{
	struct berval **vals = NULL, *v = lb_first_value(ld, e, attr, &vals);
	int err = v ? lb_str_dup(dst, v->bv_val, v->bv_len) : lb_str_dup(dst, "", 0);

	ldap_value_free_len(vals);
	return err;
}

int64_t lb_attr_int(LDAP *ld, LDAPMessage *e, const char *attr, int64_t dflt)
{
	struct berval **vals = NULL, *v = lb_first_value(ld, e, attr, &vals);
	int64_t r = lb_bv_int(v, dflt);

	ldap_value_free_len(vals);
	return r;
}

bool lb_entry_is(LDAP *ld, LDAPMessage *e, const char *cls)
{
	struct berval **vals = ldap_get_values_len(ld, e, "objectClass");
	bool is = false;

	for (size_t i = 0; vals && vals[i] && !is; i++)
		is = vals[i]->bv_len == strlen(cls) &&
		     strncasecmp(vals[i]->bv_val, cls, vals[i]->bv_len) == 0;
	ldap_value_free_len(vals);
	return is;
}

int lb_send_search(struct lb_op *op, const char *base, int scope, const char *filter,
		   const char *const *attrs)
{
	return lb_send_search_ext(op, base, scope, filter, attrs, NULL, 0);
}

int lb_send_search_ext(struct lb_op *op, const char *base, int scope, const char *filter,
		       const char *const *attrs, LDAPControl **ctrls, int sizelimit)
{
	int rc = ldap_search_ext(op->conn->ld, base, scope, filter, (char **)attrs, 0, ctrls,
				 NULL, NULL, sizelimit, &op->msgid);

	if (rc != LDAP_SUCCESS) {
		lb_conn_broken(op->conn);
		return EAGAIN;
	}
	return 0;
}

void lb_mods_bytes(struct mods *m, int op, const char *attr, const void *p, size_t len)
{
	size_t i = m->n++;

	m->m[i].mod_op = op | LDAP_MOD_BVALUES;
	m->m[i].mod_type = (char *)attr;
	if (p) {
		m->bv[i][0].bv_val = (char *)p;
		m->bv[i][0].bv_len = len;
		m->bvp[i][0] = &m->bv[i][0];
		m->bvp[i][1] = NULL;
	} else {
		m->bvp[i][0] = NULL;
	}
	m->m[i].mod_bvalues = m->bvp[i];
	m->v[i] = &m->m[i];
	m->v[i + 1] = NULL;
}

/* A string attribute; empty: none (REPLACE removes it, ADD leaves it out). */
void lb_mods_str(struct mods *m, int op, const char *attr, const struct sip_str *s)
{
	if (s->len)
		lb_mods_bytes(m, op, attr, s->p, s->len);
	else if (op == LDAP_MOD_REPLACE)
		lb_mods_bytes(m, op, attr, NULL, 0);
}

void lb_mods_int(struct mods *m, int op, const char *attr, long long v)
{
	int n = snprintf(m->num[m->n], LB_NUM_MAX, "%lld", v);

	lb_mods_bytes(m, op, attr, m->num[m->n], (size_t)n);
}

int lb_check_rc(struct lb_op *op, int rc)
{
	if (rc != LDAP_SUCCESS) {
		lb_conn_broken(op->conn);
		return EAGAIN;
	}
	return 0;
}

/* An assertion control (RFC 4528) for filter, to free with ldap_control_free. */
int lb_assertion(struct lb_op *op, const char *filter, LDAPControl **ctrlp)
{
	return ldap_create_assertion_control(op->conn->ld, (char *)filter, 1, ctrlp) ==
		       LDAP_SUCCESS
		   ? 0
		   : ENOMEM;
}

int64_t lb_wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int lb_result_code(struct lb_op *op, LDAPMessage *msg)
{
	int rc = LDAP_OTHER;

	if (ldap_parse_result(op->conn->ld, msg, &rc, NULL, NULL, NULL, NULL, 0) != LDAP_SUCCESS)
		return LDAP_OTHER;
	return rc;
}

/* Map an LDAP result of a request to an errno (0: success). */
int lb_errno_of(int rc)
{
	switch (rc) {
	case LDAP_SUCCESS:
		return 0;
	case LDAP_NO_SUCH_OBJECT:
		return ENOENT;
	case LDAP_ALREADY_EXISTS:
		return EEXIST;
	case LDAP_INSUFFICIENT_ACCESS:
	case LDAP_INVALID_CREDENTIALS:
		return EACCES;
	case LDAP_INVALID_SYNTAX:
	case LDAP_INVALID_DN_SYNTAX:
	case LDAP_OBJECT_CLASS_VIOLATION:
	case LDAP_UNDEFINED_TYPE:
	case LDAP_CONSTRAINT_VIOLATION:
		return EINVAL;
	case LDAP_TIMELIMIT_EXCEEDED:
	case LDAP_TIMEOUT:
		return ETIMEDOUT;
	default:
		return EAGAIN;
	}
}
