/* Inside the ldap backend: its section of the config file (conf.c), read by ldap.c at open.
 * The same shape serves directory: and location:. */
#ifndef SIPREG_BACKEND_LDAP_CONF_H
#define SIPREG_BACKEND_LDAP_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sipreg/location_backend.h"

/* LDAP attribute names the directory reads users from; NULL: the tree has no such
 * attribute (configured as "-"). */
struct ldap_attr_map {
	char *user;	    /* the digest user name (SIPIdentityUserName) */
	char *password;	    /* a clear password (SIPIdentityPassword) */
	char *uri;	    /* SIP URIs giving the user's domains (SIPIdentitySIPURI) */
	char *ha1_md5;	    /* hex HA1s, "{md5}" prefix allowed (sipregHA1MD5) */
	char *ha1_sha256;   /* (sipregHA1SHA256) */
	char *enabled;	    /* boolean, absent = enabled (sipregEnabled) */
	char *auth_off;	    /* boolean (sipregAuthOff) */
	char *max_contacts; /* integer (sipregMaxContacts) */
	char *alias;	    /* user@domain, multi-valued (sipregAlias) */
};

struct ldap_conf {
	char **uris; /* tried in turn (failover) */
	size_t n_uris;
	char *bind_dn;	     /* NULL: SASL EXTERNAL over ldapi://, else anonymous */
	char *bind_password; /* read from bind_password_file when that is given */
	char *base_dn;
	char *users_base;    /* default "ou=users,<base_dn>" */
	char *filter;	     /* default "(objectClass=SIPIdentity)" */
	char *bindings_base; /* default "ou=bindings,<base_dn>" */
	struct ldap_attr_map attrs;
	uint32_t timeout_ms; /* every connect and operation, default 2000 */
	uint32_t pool;	     /* request connections, default 2 */
	uint32_t refresh_s;  /* re-read period where the server lacks syncprov, default 30 */
	bool sync;	     /* RFC 4533 refreshAndPersist (default true) */
	uint32_t sweep_s;    /* expired bindings are removed this often, default 60 */
	bool sweeps;	     /* opened for location: (bindings kept here): sweep them */
	bool starttls;
	char *ca_file;
};

int ldap_be_configure(void **confp, const struct conf_section *sec,
		      const struct location_conf_env *env);
void ldap_be_conf_free(void *conf);
bool ldap_be_same_store(const void *a, const void *b);

#endif
