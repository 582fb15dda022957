/* The ldap backend's section: {backend: ldap, uri: URI or [URI, ...], bind_dn, bind_password or
 * bind_password_file, base_dn, users_base, filter, bindings_base, attributes: {...},
 * timeout_ms, pool, refresh_s, sweep_s, sync, starttls, ca_file}. Unknown keys are refused. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ldap_conf.h"

#define LDAP_PASSWORD_MAX 4096

static const char *const attr_keys[] = {"user",	   "password", "uri",	       "ha1_md5",
					"ha1_sha256", "enabled", "auth_off", "max_contacts",
					"alias"};

static char **attr_slot(struct ldap_attr_map *m, size_t i)
{
	char **slots[] = {&m->user,    &m->password, &m->uri,	       &m->ha1_md5, &m->ha1_sha256,
			  &m->enabled, &m->auth_off, &m->max_contacts, &m->alias};

	return slots[i];
}

static int set_default(char **vp, const char *v)
{
	if (*vp)
		return 0;
	*vp = strdup(v);
	return *vp ? 0 : ENOMEM;
}

static int read_attrs(const struct conf_section *sub, size_t i, void *arg)
{
	struct ldap_attr_map *m = arg;
	int err;

	(void)i;
	err = conf_keys(sub, attr_keys, sizeof(attr_keys) / sizeof(attr_keys[0]));
	for (size_t k = 0; !err && k < sizeof(attr_keys) / sizeof(attr_keys[0]); k++)
		err = conf_string(sub, attr_keys[k], attr_slot(m, k));
	return err;
}

/* The password file's first line (a trailing newline is not part of the password). */
static int read_password_file(const struct conf_section *sec, const char *path, char **pwp)
{
	char buf[LDAP_PASSWORD_MAX + 2];
	FILE *f = fopen(path, "r");
	size_t n;

	if (!f)
		return conf_fail(sec, "bind_password_file", CONF_NO_INDEX, "cannot read %s: %s",
				 path, strerror(errno));
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	buf[strcspn(buf, "\r\n")] = '\0';
	if (n > LDAP_PASSWORD_MAX || !*buf)
		return conf_fail(sec, "bind_password_file", CONF_NO_INDEX,
				 "%s: expected one line of at most %d bytes", path,
				 LDAP_PASSWORD_MAX);
	*pwp = strdup(buf);
	return *pwp ? 0 : ENOMEM;
}

static int join_default(char **vp, const char *rdn, const char *base)
{
	size_t n = strlen(rdn) + strlen(base) + 2;

	if (*vp)
		return 0;
	*vp = malloc(n);
	if (!*vp)
		return ENOMEM;
	snprintf(*vp, n, "%s,%s", rdn, base);
	return 0;
}

int ldap_be_configure(void **confp, const struct conf_section *sec,
		      const struct location_conf_env *env)
{
	static const char *const keys[] = {
	    "backend",	  "uri",	"bind_dn",	 "bind_password", "bind_password_file",
	    "base_dn",	  "users_base", "filter",	 "bindings_base", "attributes",
	    "timeout_ms", "pool",	"refresh_s",	 "sync",	  "starttls",
	    "ca_file",	  "sweep_s"};
	struct ldap_conf *lc;
	char *pw_file = NULL;
	int err;

	*confp = NULL;
	lc = calloc(1, sizeof(*lc));
	if (!lc)
		return ENOMEM;
	lc->sync = true;
	/* Expiry is the location backend's job; a directory-only instance has no bindings. */
	lc->sweeps = env && env->section && strcmp(env->section, "location") == 0;
	if (!sec) {
		err = conf_fail(sec, NULL, CONF_NO_INDEX, "backend ldap needs uri and base_dn");
		goto out;
	}
	err = conf_keys(sec, keys, sizeof(keys) / sizeof(keys[0]));
	if (!err && conf_count(sec, "uri") > 0)
		err = conf_strings(sec, "uri", &lc->uris, &lc->n_uris);
	else if (!err && conf_has(sec, "uri")) {
		lc->uris = calloc(1, sizeof(*lc->uris));
		err = lc->uris ? conf_string(sec, "uri", &lc->uris[0]) : ENOMEM;
		lc->n_uris = lc->uris && lc->uris[0] ? 1 : 0;
	}
	if (!err)
		err = conf_string(sec, "bind_dn", &lc->bind_dn);
	if (!err)
		err = conf_string(sec, "bind_password", &lc->bind_password);
	if (!err)
		err = conf_string(sec, "bind_password_file", &pw_file);
	if (!err && pw_file && lc->bind_password)
		err = conf_fail(sec, "bind_password_file", CONF_NO_INDEX,
				"give bind_password or bind_password_file, not both");
	if (!err && pw_file)
		err = read_password_file(sec, pw_file, &lc->bind_password);
	if (!err)
		err = conf_string(sec, "base_dn", &lc->base_dn);
	if (!err)
		err = conf_string(sec, "users_base", &lc->users_base);
	if (!err)
		err = conf_string(sec, "filter", &lc->filter);
	if (!err)
		err = conf_string(sec, "bindings_base", &lc->bindings_base);
	if (!err)
		err = conf_map(sec, "attributes", read_attrs, &lc->attrs);
	if (!err)
		err = conf_uint(sec, "timeout_ms", 1, 3600000, &lc->timeout_ms);
	if (!err)
		err = conf_uint(sec, "pool", 1, 64, &lc->pool);
	if (!err)
		err = conf_uint(sec, "refresh_s", 1, 86400, &lc->refresh_s);
	if (!err)
		err = conf_uint(sec, "sweep_s", 1, 86400, &lc->sweep_s);
	if (!err)
		err = conf_bool(sec, "sync", &lc->sync);
	if (!err)
		err = conf_bool(sec, "starttls", &lc->starttls);
	if (!err)
		err = conf_string(sec, "ca_file", &lc->ca_file);
	if (err)
		goto out;
	if (lc->n_uris == 0 || !lc->base_dn) {
		err = conf_fail(sec, NULL, CONF_NO_INDEX, "backend ldap needs uri and base_dn");
		goto out;
	}
	if (lc->bind_password && !lc->bind_dn) {
		err = conf_fail(sec, "bind_password", CONF_NO_INDEX,
				"a bind password needs bind_dn");
		goto out;
	}
	if (lc->filter && lc->filter[0] != '(') {
		err = conf_fail(sec, "filter", CONF_NO_INDEX,
				"expected an LDAP filter in parentheses");
		goto out;
	}
	for (size_t i = 0; i < lc->n_uris; i++) {
		if (strncmp(lc->uris[i], "ldap://", 7) != 0 &&
		    strncmp(lc->uris[i], "ldaps://", 8) != 0 &&
		    strncmp(lc->uris[i], "ldapi://", 8) != 0) {
			err = conf_fail(sec, "uri", lc->n_uris > 1 ? i : CONF_NO_INDEX,
					"expected an ldap://, ldaps:// or ldapi:// URI");
			goto out;
		}
	}
	if (!lc->timeout_ms)
		lc->timeout_ms = 2000;
	if (!lc->pool)
		lc->pool = 2;
	if (!lc->refresh_s)
		lc->refresh_s = 30;
	if (!lc->sweep_s)
		lc->sweep_s = 60;
	err = join_default(&lc->users_base, "ou=users", lc->base_dn);
	if (!err)
		err = join_default(&lc->bindings_base, "ou=bindings", lc->base_dn);
	if (!err)
		err = set_default(&lc->filter, "(objectClass=SIPIdentity)");
	if (!err)
		err = set_default(&lc->attrs.user, "SIPIdentityUserName");
	if (!err)
		err = set_default(&lc->attrs.password, "SIPIdentityPassword");
	if (!err)
		err = set_default(&lc->attrs.uri, "SIPIdentitySIPURI");
	if (!err)
		err = set_default(&lc->attrs.ha1_md5, "sipregHA1MD5");
	if (!err)
		err = set_default(&lc->attrs.ha1_sha256, "sipregHA1SHA256");
	if (!err)
		err = set_default(&lc->attrs.enabled, "sipregEnabled");
	if (!err)
		err = set_default(&lc->attrs.auth_off, "sipregAuthOff");
	if (!err)
		err = set_default(&lc->attrs.max_contacts, "sipregMaxContacts");
	if (!err)
		err = set_default(&lc->attrs.alias, "sipregAlias");
	/* "-": the tree has no such attribute. */
	for (size_t k = 0; !err && k < sizeof(attr_keys) / sizeof(attr_keys[0]); k++) {
		char **slot = attr_slot(&lc->attrs, k);

		if (strcmp(*slot, "-") == 0) {
			free(*slot);
			*slot = NULL;
		}
	}
	if (!err && !lc->attrs.user)
		err = conf_fail(sec, "attributes", CONF_NO_INDEX, "attributes.user is required");
out:
	free(pw_file);
	if (err) {
		ldap_be_conf_free(lc);
		return err;
	}
	*confp = lc;
	return 0;
}

void ldap_be_conf_free(void *conf)
{
	struct ldap_conf *lc = conf;

	if (!lc)
		return;
	for (size_t i = 0; i < lc->n_uris; i++)
		free(lc->uris[i]);
	free(lc->uris);
	free(lc->bind_dn);
	if (lc->bind_password) {
		/* Not left behind in freed memory. */
		memset(lc->bind_password, 0, strlen(lc->bind_password));
		free(lc->bind_password);
	}
	free(lc->base_dn);
	free(lc->users_base);
	free(lc->filter);
	free(lc->bindings_base);
	for (size_t k = 0; k < sizeof(attr_keys) / sizeof(attr_keys[0]); k++)
		free(*attr_slot(&lc->attrs, k));
	free(lc->ca_file);
	free(lc);
}

static bool str_same(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* One server set, one bind and one tree: one instance (one pool, one cache) serves both
 * directory: and location:. */
bool ldap_be_same_store(const void *a, const void *b)
{
	const struct ldap_conf *x = a, *y = b;

	if (x->n_uris != y->n_uris)
		return false;
	for (size_t i = 0; i < x->n_uris; i++) {
		if (strcmp(x->uris[i], y->uris[i]) != 0)
			return false;
	}
	for (size_t k = 0; k < sizeof(attr_keys) / sizeof(attr_keys[0]); k++) {
		if (!str_same(*attr_slot((struct ldap_attr_map *)&x->attrs, k),
			      *attr_slot((struct ldap_attr_map *)&y->attrs, k)))
			return false;
	}
	return str_same(x->bind_dn, y->bind_dn) && str_same(x->bind_password, y->bind_password) &&
	       str_same(x->base_dn, y->base_dn) && str_same(x->users_base, y->users_base) &&
	       str_same(x->filter, y->filter) && str_same(x->bindings_base, y->bindings_base) &&
	       x->timeout_ms == y->timeout_ms && x->pool == y->pool &&
	       x->refresh_s == y->refresh_s && x->sweep_s == y->sweep_s && x->sync == y->sync && x->starttls == y->starttls &&
	       str_same(x->ca_file, y->ca_file);
}
