/* sipregd.yaml -> struct config: libyaml's document API, then a strict walk that rejects
 * unknown keys, wrong types and inconsistent values with "file:line: key.path: why".
 *
 * DESIGN: the whole document is loaded first (yaml_parser_load) so sections can be read in
 * dependency order whatever their order in the file: domains before everything that names
 * a domain (users, aliases, auth.off_domains), auth before users (whether a user needs a
 * secret). Every string in struct config is heap-owned by it and freed by config_free(). */
#include "config/config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <yaml.h>

#include "util/yaml.h"
#include "util/digest.h"
#include "sipreg/hmap.h"
#include "sipreg/log.h"
#include "util/netaddr.h"

/* A config bigger than this is a mistake (a wrong file), not a config. */
#define CONFIG_MAX_FILE (16u * 1024 * 1024)

static bool cfg_domain_valid(const char *s)
{
	for (; *s; s++) {
		if (isspace((unsigned char)*s) || iscntrl((unsigned char)*s) || *s == '@' ||
		    *s == '/')
			return false;
	}
	return true;
}

static const char *cfg_domain_find(const struct config *cfg, const char *domain, size_t len)
{
	for (size_t i = 0; i < cfg->registrar.n_domains; i++) {
		const char *d = cfg->registrar.domains[i];

		if (strlen(d) == len && strncasecmp(d, domain, len) == 0)
			return d;
	}
	return NULL;
}

bool config_domain_known(const struct config *cfg, const char *domain, size_t len)
{
	if (!cfg || !domain)
		return false;
	return cfg_domain_find(cfg, domain, len) != NULL;
}

/* A list of domain names, lower-cased; must_be_served: each must be in domains. */
static int cfg_domain_list(struct cfg_parse *p, yaml_node_t *node, const char *path,
			   bool must_be_served, char ***vp, size_t *np)
{
	char sub[CONFIG_PATH_MAX], q[48];
	size_t n;
	int err;

	err = cfg_sequence(p, node, path);
	if (err)
		return err;
	n = cfg_seq_len(node);
	if (n == 0)
		return 0;
	*vp = calloc(n, sizeof(**vp));
	if (!*vp)
		return ENOMEM;
	for (size_t i = 0; i < n; i++) {
		yaml_node_t *item = cfg_seq_item(p, node, i);

		cfg_pathf(sub, "%s[%zu]", path, i);
		err = cfg_string(p, item, sub, &(*vp)[*np]);
		if (err)
			return err;
		(*np)++;
		cfg_lower((*vp)[i]);
		if (!cfg_domain_valid((*vp)[i]))
			return cfg_fail(p, item, sub,
					"\"%s\" is not a domain name (no spaces, '@' or '/')",
					cfg_quote(item, q, sizeof(q)));
		for (size_t j = 0; j < i; j++) {
			if (strcmp((*vp)[j], (*vp)[i]) == 0)
				return cfg_fail(p, item, sub, "duplicate domain \"%s\"",
						(*vp)[i]);
		}
		if (must_be_served && !config_domain_known(p->cfg, (*vp)[i], strlen((*vp)[i])))
			return cfg_fail(p, item, sub, "\"%s\" is not one of domains", (*vp)[i]);
	}
	return 0;
}

/* "udp://127.0.0.1:5060", "tcp://[::1]:5060": numeric addresses only, the daemon never
 * waits on DNS. */
static int cfg_listen_one(struct cfg_parse *p, yaml_node_t *node, const char *path,
			  struct listen_spec *ls)
{
	static const char usage[] = "expected udp://ADDR:PORT or tcp://ADDR:PORT with a "
				    "numeric address ([ADDR] for IPv6)";
	char q[80], addr[64], got[80];
	const char *s, *hostp, *endp, *portp;
	unsigned char bin[sizeof(struct in6_addr)];
	size_t hlen;
	uint64_t port = 0;

	if (!cfg_is_scalar(node) || cfg_is_null(node))
		return cfg_fail(p, node, path, "%s, %s", usage,
				cfg_got(node, got, sizeof(got)));
	s = cfg_text(node);
	cfg_quote(node, q, sizeof(q));
	if (strncasecmp(s, "tls://", 6) == 0)
		return cfg_fail(p, node, path, "tls:// is not supported yet (\"%s\")", q);
	if (strncasecmp(s, "udp://", 6) == 0)
		ls->proto = SIP_PROTO_UDP;
	else if (strncasecmp(s, "tcp://", 6) == 0)
		ls->proto = SIP_PROTO_TCP;
	else
		return cfg_fail(p, node, path, "%s, got \"%s\"", usage, q);
	hostp = s + 6;
	if (*hostp == '[') {
		hostp++;
		endp = strchr(hostp, ']');
		if (!endp || endp[1] != ':')
			return cfg_fail(p, node, path, "%s, got \"%s\"", usage, q);
		portp = endp + 2;
	} else {
		endp = strrchr(hostp, ':');
		if (!endp)
			return cfg_fail(p, node, path, "%s, got \"%s\"", usage, q);
		portp = endp + 1;
	}
	hlen = (size_t)(endp - hostp);
	if (hlen == 0 || hlen >= sizeof(addr))
		return cfg_fail(p, node, path, "%s, got \"%s\"", usage, q);
	memcpy(addr, hostp, hlen);
	addr[hlen] = '\0';
	if (inet_pton(s[6] == '[' ? AF_INET6 : AF_INET, addr, bin) != 1)
		return cfg_fail(p, node, path,
				"\"%s\" is not a numeric IP%s address (no host names)", addr,
				s[6] == '[' ? "v6" : "v4 (IPv6 goes in brackets)");
	if (*portp == '\0' || strlen(portp) > 5)
		goto bad_port;
	for (const char *c = portp; *c; c++) {
		if (!isdigit((unsigned char)*c))
			goto bad_port;
		port = port * 10 + (uint64_t)(*c - '0');
	}
	if (port < 1 || port > 65535)
		goto bad_port;
	snprintf(ls->addr, sizeof(ls->addr), "%s", addr);
	ls->port = (uint16_t)port;
	return 0;
bad_port:
	return cfg_fail(p, node, path, "port must be 1..65535, got \"%s\"", q);
}

static int cfg_listen(struct cfg_parse *p, yaml_node_t *node)
{
	struct config *cfg = p->cfg;
	char sub[CONFIG_PATH_MAX];
	size_t n;
	int err;

	err = cfg_sequence(p, node, "listen");
	if (err)
		return err;
	n = cfg_seq_len(node);
	if (n == 0)
		return cfg_fail(p, node, "listen", "needs at least one address");
	cfg->listen = calloc(n, sizeof(*cfg->listen));
	if (!cfg->listen)
		return ENOMEM;
	for (size_t i = 0; i < n; i++) {
		yaml_node_t *item = cfg_seq_item(p, node, i);
		struct listen_spec *ls = &cfg->listen[i];

		cfg_pathf(sub, "listen[%zu]", i);
		err = cfg_listen_one(p, item, sub, ls);
		if (err)
			return err;
		for (size_t j = 0; j < i; j++) {
			if (cfg->listen[j].proto == ls->proto &&
			    cfg->listen[j].port == ls->port &&
			    strcmp(cfg->listen[j].addr, ls->addr) == 0)
				return cfg_fail(p, item, sub, "listed twice");
		}
		cfg->n_listen++;
	}
	return 0;
}

static int cfg_listen_default(struct config *cfg)
{
	cfg->listen = calloc(2, sizeof(*cfg->listen));
	if (!cfg->listen)
		return ENOMEM;
	cfg->listen[0] = (struct listen_spec){.proto = SIP_PROTO_UDP, .port = 5060};
	cfg->listen[1] = (struct listen_spec){.proto = SIP_PROTO_TCP, .port = 5060};
	strcpy(cfg->listen[0].addr, "127.0.0.1");
	strcpy(cfg->listen[1].addr, "127.0.0.1");
	cfg->n_listen = 2;
	return 0;
}

static int cfg_registrar(struct cfg_parse *p, yaml_node_t *node)
{
	struct cfg_field f[] = {
	    {.name = "default_expires"},     {.name = "min_expires"},
	    {.name = "max_expires"},	     {.name = "max_contacts"},
	    {.name = "max_contacts_status"}, {.name = "unknown_domain"},
	    {.name = "unknown_user"},
	};
	struct registrar_conf *rc = &p->cfg->registrar;
	uint32_t *u32[] = {&rc->default_expires, &rc->min_expires, &rc->max_expires,
			   &rc->max_contacts};
	char path[CONFIG_PATH_MAX];
	int err;

	err = cfg_map_fields(p, node, "registrar", f, sizeof(f) / sizeof(f[0]));
	if (err)
		return err;
	for (size_t i = 0; i < 4; i++) {
		if (!f[i].value)
			continue;
		cfg_path(path, "registrar", f[i].name);
		err = cfg_uint(p, f[i].value, path, 0, UINT32_MAX, u32[i]);
		if (err)
			return err;
	}
	if (f[4].value) {
		err = cfg_status(p, f[4].value, "registrar.max_contacts_status", 403, 503,
				 &rc->max_contacts_status);
		if (err)
			return err;
	}
	if (f[5].value) {
		err = cfg_status(p, f[5].value, "registrar.unknown_domain", 403, 404,
				 &rc->unknown_domain_status);
		if (err)
			return err;
	}
	if (f[6].value) {
		err = cfg_status(p, f[6].value, "registrar.unknown_user", 403, 404,
				 &rc->unknown_user_status);
		if (err)
			return err;
	}
	if (rc->min_expires > rc->max_expires) {
		bool at_min = f[1].value != NULL;

		return cfg_fail(p, at_min ? f[1].value : (f[2].value ? f[2].value : node),
				at_min ? "registrar.min_expires" : "registrar.max_expires",
				"min_expires (%lu) is above max_expires (%lu)",
				(unsigned long)rc->min_expires, (unsigned long)rc->max_expires);
	}
	if (rc->default_expires < rc->min_expires || rc->default_expires > rc->max_expires) {
		bool below = rc->default_expires < rc->min_expires;

		/* An explicit default_expires is the culprit; else the bound that moved past
		 * the built-in default. */
		if (f[0].value || !f[below ? 1 : 2].value)
			return cfg_fail(
			    p, f[0].value ? f[0].value : node, "registrar.default_expires",
			    "%lu is outside min_expires..max_expires (%lu..%lu)",
			    (unsigned long)rc->default_expires, (unsigned long)rc->min_expires,
			    (unsigned long)rc->max_expires);
		return cfg_fail(p, f[below ? 1 : 2].value,
				below ? "registrar.min_expires" : "registrar.max_expires",
				"is %s default_expires (%lu): set registrar.default_expires "
				"inside min_expires..max_expires",
				below ? "above" : "below", (unsigned long)rc->default_expires);
	}
	return 0;
}

static int cfg_ban(struct cfg_parse *p, yaml_node_t *node)
{
	struct cfg_field f[] = {{.name = "max_failures"},
				{.name = "window"},
				{.name = "ban_time"},
				{.name = "action"}};
	struct auth_conf *ac = &p->cfg->auth;
	char got[80];
	int err;

	err = cfg_map_fields(p, node, "auth.ban", f, sizeof(f) / sizeof(f[0]));
	if (err)
		return err;
	if (f[0].value) {
		err = cfg_uint(p, f[0].value, "auth.ban.max_failures", 0, UINT32_MAX,
			       &ac->ban.max_failures);
		if (err)
			return err;
	}
	if (f[1].value) {
		err =
		    cfg_uint(p, f[1].value, "auth.ban.window", 1, UINT32_MAX, &ac->ban.window);
		if (err)
			return err;
	}
	if (f[2].value) {
		err = cfg_uint(p, f[2].value, "auth.ban.ban_time", 1, UINT32_MAX,
			       &ac->ban.ban_time);
		if (err)
			return err;
	}
	if (f[3].value) {
		const yaml_node_t *v = f[3].value;

		if (cfg_is_scalar(v) && strcmp(cfg_text(v), "403") == 0)
			ac->ban.action = BAN_REPLY_403;
		else if (cfg_is_scalar(v) && strcasecmp(cfg_text(v), "drop") == 0)
			ac->ban.action = BAN_DROP;
		else
			return cfg_fail(p, v, "auth.ban.action", "expected 403 or drop, %s",
					cfg_got(v, got, sizeof(got)));
	}
	return 0;
}

/* A list of challenge algorithms, most preferred first (RFC 8760), into algs[2] / *np:
 * auth.algorithms and each auth.user_agents[i].algorithms. */
static int cfg_algorithms(struct cfg_parse *p, yaml_node_t *node, const char *path, int *algs,
			  size_t *np)
{
	char sub[CONFIG_PATH_MAX], got[80];
	size_t n;
	int err, alg;

	err = cfg_sequence(p, node, path);
	if (err)
		return err;
	n = cfg_seq_len(node);
	if (n == 0)
		return cfg_fail(p, node, path, "needs MD5, SHA-256 or both");
	if (n > 2)
		return cfg_fail(p, node, path, "at most MD5 and SHA-256, once each");
	for (size_t i = 0; i < n; i++) {
		yaml_node_t *item = cfg_seq_item(p, node, i);

		cfg_pathf(sub, "%s[%zu]", path, i);
		if (cfg_is_scalar(item) && strcasecmp(cfg_text(item), "MD5") == 0)
			alg = DIGEST_MD5;
		else if (cfg_is_scalar(item) && strcasecmp(cfg_text(item), "SHA-256") == 0)
			alg = DIGEST_SHA256;
		else
			return cfg_fail(p, item, sub, "expected MD5 or SHA-256, %s",
					cfg_got(item, got, sizeof(got)));
		for (size_t j = 0; j < i; j++) {
			if (algs[j] == alg)
				return cfg_fail(p, item, sub, "listed twice");
		}
		algs[i] = alg;
		*np = i + 1;
	}
	return 0;
}

/* Longest auth.user_agents[i].match: a User-Agent longer than a line is no phone's. */
#define CFG_UA_MATCH_MAX 256

static void cfg_ua_rules_free(struct auth_conf *ac)
{
	for (size_t i = 0; i < ac->n_user_agents; i++)
		free(ac->user_agents[i].match);
	free(ac->user_agents);
	ac->user_agents = NULL;
	ac->n_user_agents = 0;
}

/* auth.user_agents: [{match: "...", algorithms: [...]}, ...], replacing the default rules. */
static int cfg_user_agents(struct cfg_parse *p, yaml_node_t *node)
{
	struct auth_conf *ac = &p->cfg->auth;
	char path[CONFIG_PATH_MAX], sub[CONFIG_PATH_MAX];
	size_t n;
	int err;

	err = cfg_sequence(p, node, "auth.user_agents");
	if (err)
		return err;
	cfg_ua_rules_free(ac);
	n = cfg_seq_len(node);
	if (n == 0)
		return 0;
	ac->user_agents = calloc(n, sizeof(*ac->user_agents));
	if (!ac->user_agents)
		return ENOMEM;
	for (size_t i = 0; i < n; i++) {
		struct cfg_field f[] = {{.name = "match"}, {.name = "algorithms"}};
		yaml_node_t *item = cfg_seq_item(p, node, i);
		struct auth_ua_rule *rule = &ac->user_agents[i];

		ac->n_user_agents++; /* counted first: config_free releases a half-filled one */
		cfg_pathf(path, "auth.user_agents[%zu]", i);
		err = cfg_map_fields(p, item, path, f, 2);
		if (err)
			return err;
		if (!f[0].value || !f[1].value)
			return cfg_fail(p, item, path, "needs match and algorithms");
		cfg_path(sub, path, "match");
		err = cfg_string(p, f[0].value, sub, &rule->match);
		if (err)
			return err;
		if (strlen(rule->match) > CFG_UA_MATCH_MAX)
			return cfg_fail(p, f[0].value, sub, "longer than %d bytes",
					CFG_UA_MATCH_MAX);
		cfg_path(sub, path, "algorithms");
		err = cfg_algorithms(p, f[1].value, sub, rule->algorithms, &rule->n_algorithms);
		if (err)
			return err;
	}
	return 0;
}

static int cfg_ua_rules_default(struct auth_conf *ac)
{
	ac->user_agents = calloc(1, sizeof(*ac->user_agents));
	if (!ac->user_agents)
		return ENOMEM;
	ac->user_agents[0].match = strdup(AUTH_UA_DEFAULT_MATCH);
	if (!ac->user_agents[0].match) {
		free(ac->user_agents);
		ac->user_agents = NULL;
		return ENOMEM;
	}
	ac->user_agents[0].algorithms[0] = DIGEST_SHA256;
	ac->user_agents[0].algorithms[1] = DIGEST_MD5;
	ac->user_agents[0].n_algorithms = 2;
	ac->n_user_agents = 1;
	return 0;
}

/* `auth: off`, `auth: on`, or the full mapping. */
static int cfg_auth(struct cfg_parse *p, yaml_node_t *node)
{
	struct cfg_field f[] = {{.name = "enabled"},	{.name = "secret_file"},
				{.name = "nonce_ttl"},	{.name = "off_domains"},
				{.name = "ban"},	{.name = "algorithms"},
				{.name = "user_agents"}};
	struct auth_conf *ac = &p->cfg->auth;
	char got[80];
	int err;

	if (cfg_is_scalar(node)) {
		if (cfg_bool_text(node, &ac->enabled) != 0)
			return cfg_fail(
			    p, node, "auth",
			    "expected on, off or a mapping (enabled, secret_file, "
			    "nonce_ttl, off_domains, ban, algorithms, user_agents), %s",
			    cfg_got(node, got, sizeof(got)));
		return 0;
	}
	err = cfg_map_fields(p, node, "auth", f, sizeof(f) / sizeof(f[0]));
	if (err)
		return err;
	if (f[0].value) {
		err = cfg_bool(p, f[0].value, "auth.enabled", &ac->enabled);
		if (err)
			return err;
	}
	if (f[1].value) {
		err = cfg_string(p, f[1].value, "auth.secret_file", &ac->secret_file);
		if (err)
			return err;
	}
	if (f[2].value) {
		err = cfg_uint(p, f[2].value, "auth.nonce_ttl", 1, UINT32_MAX, &ac->nonce_ttl);
		if (err)
			return err;
	}
	if (f[3].value) {
		err = cfg_domain_list(p, f[3].value, "auth.off_domains", true, &ac->off_domains,
				      &ac->n_off_domains);
		if (err)
			return err;
	}
	if (f[4].value) {
		err = cfg_ban(p, f[4].value);
		if (err)
			return err;
	}
	if (f[5].value) {
		err = cfg_algorithms(p, f[5].value, "auth.algorithms", ac->algorithms,
				     &ac->n_algorithms);
		if (err)
			return err;
	}
	if (f[6].value)
		return cfg_user_agents(p, f[6].value);
	return 0;
}

static int cfg_limits(struct cfg_parse *p, yaml_node_t *node)
{
	struct cfg_field f[] = {{.name = "max_message_size"},
				{.name = "max_tcp_connections"},
				{.name = "tcp_idle_timeout"},
				{.name = "max_transactions"},
				{.name = "max_pending"},
				{.name = "max_queue_delay_ms"},
				{.name = "max_backend_delay_ms"},
				{.name = "max_tcp_connections_per_source"},
				{.name = "tcp_output_budget"},
				{.name = "tcp_max_output"},
				{.name = "tcp_output_timeout"}};
	struct limits_conf *lc = &p->cfg->limits;
	uint32_t *v[] = {&lc->max_message_size, &lc->max_tcp_connections, &lc->tcp_idle_timeout,
			 &lc->max_transactions, &lc->max_pending, &lc->max_queue_delay_ms,
			 &lc->max_backend_delay_ms, &lc->max_tcp_connections_per_source,
			 &lc->tcp_output_budget, &lc->tcp_max_output, &lc->tcp_output_timeout};
	/* A REGISTER with a few headers needs some hundred bytes; below that nothing works.
	 * A connection must be able to hold a few responses: 4 KiB of output at least. */
	const uint32_t min[] = {512, 1, 1, 1, 1, 0, 0, 0, 4096, 4096, 0};
	/* Past 64*T1 every client has given the transaction up: shedding later is not
	 * shedding. Output pending for an hour is not a slow reader but a dead one. */
	const uint32_t max[] = {UINT32_MAX, UINT32_MAX, UINT32_MAX, UINT32_MAX, UINT32_MAX,
				32000,	    32000,	UINT32_MAX, UINT32_MAX, UINT32_MAX,
				3600};
	char path[CONFIG_PATH_MAX];
	int err;

	err = cfg_map_fields(p, node, "limits", f, sizeof(f) / sizeof(f[0]));
	if (err)
		return err;
	for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
		if (!f[i].value)
			continue;
		cfg_path(path, "limits", f[i].name);
		err = cfg_uint(p, f[i].value, path, min[i], max[i], v[i]);
		if (err)
			return err;
	}
	/* Said in words, not as a bare range: the operator raising it wants bigger TCP
	 * messages and needs to know why the UDP path caps every transport. */
	if (lc->max_message_size > CONFIG_MAX_MESSAGE_SIZE)
		return cfg_fail(p, f[0].value, "limits.max_message_size",
				"%" PRIu32 " is more than a UDP datagram can carry; at most %u",
				lc->max_message_size, CONFIG_MAX_MESSAGE_SIZE);
	/* A budget set below the default share lowers the share with it; a share set above
	 * the budget is a contradiction worth saying. */
	if (lc->tcp_max_output > lc->tcp_output_budget && !f[9].value)
		lc->tcp_max_output = lc->tcp_output_budget;
	if (lc->tcp_max_output > lc->tcp_output_budget)
		return cfg_fail(p, f[9].value, "limits.tcp_max_output",
				"%" PRIu32 " is above tcp_output_budget (%" PRIu32 ")",
				lc->tcp_max_output, lc->tcp_output_budget);
	return 0;
}

static int cfg_log(struct cfg_parse *p, yaml_node_t *node)
{
	struct cfg_field f[] = {{.name = "level"}, {.name = "target"}};
	enum log_level level;
	char got[80];
	int err;

	err = cfg_map_fields(p, node, "log", f, 2);
	if (err)
		return err;
	if (f[0].value) {
		if (!cfg_is_scalar(f[0].value) ||
		    log_level_parse(cfg_text(f[0].value), &level) != 0)
			return cfg_fail(p, f[0].value, "log.level",
					"expected error, warn, info or debug, %s",
					cfg_got(f[0].value, got, sizeof(got)));
		p->cfg->log_level = (int)level;
	}
	if (f[1].value) {
		const char *t = cfg_is_scalar(f[1].value) ? cfg_text(f[1].value) : "";

		if (strcmp(t, "stderr") == 0)
			p->cfg->log_target = LOG_TARGET_STDERR;
		else if (strcmp(t, "syslog") == 0)
			p->cfg->log_target = LOG_TARGET_SYSLOG;
		else
			return cfg_fail(p, f[1].value, "log.target",
					"expected stderr or syslog, %s",
					cfg_got(f[1].value, got, sizeof(got)));
	}
	return 0;
}

/* metrics: {listen: [ADDR:]PORT, health_window: S}. A bare port binds loopback: the
 * endpoint tells anyone who reaches it how busy the registrar is. */
static int cfg_metrics(struct cfg_parse *p, yaml_node_t *node)
{
	struct cfg_field f[] = {{.name = "listen"}, {.name = "health_window"}};
	const char *s, *portp, *endp;
	unsigned char bin[sizeof(struct in6_addr)];
	char q[80];
	uint64_t port = 0;
	size_t hlen;
	bool v6;
	int err;

	err = cfg_map_fields(p, node, "metrics", f, 2);
	if (err)
		return err;
	if (f[1].value) {
		err = cfg_uint(p, f[1].value, "metrics.health_window", 1, 3600,
			       &p->cfg->metrics.health_window);
		if (err)
			return err;
	}
	if (!f[0].value)
		return 0;
	if (!cfg_is_scalar(f[0].value) || cfg_is_null(f[0].value))
		goto bad;
	s = cfg_text(f[0].value);
	cfg_quote(f[0].value, q, sizeof(q));
	v6 = s[0] == '[';
	if (v6) {
		endp = strchr(s, ']');
		if (!endp || endp[1] != ':')
			goto bad;
		portp = endp + 2;
		s++;
	} else {
		endp = strrchr(s, ':');
		portp = endp ? endp + 1 : s;
	}
	hlen = endp ? (size_t)(endp - s) : 0;
	if (endp && (hlen == 0 || hlen >= sizeof(p->cfg->metrics.addr)))
		goto bad;
	if (endp) {
		memcpy(p->cfg->metrics.addr, s, hlen);
		p->cfg->metrics.addr[hlen] = '\0';
	} else {
		strcpy(p->cfg->metrics.addr, "127.0.0.1");
	}
	if (inet_pton(v6 ? AF_INET6 : AF_INET, p->cfg->metrics.addr, bin) != 1)
		goto bad;
	if (*portp == '\0' || strlen(portp) > 5)
		goto bad;
	for (const char *c = portp; *c; c++) {
		if (!isdigit((unsigned char)*c))
			goto bad;
		port = port * 10 + (uint64_t)(*c - '0');
	}
	if (port < 1 || port > 65535)
		goto bad;
	p->cfg->metrics.port = (uint16_t)port;
	return 0;
bad:
	return cfg_fail(p, f[0].value, "metrics.listen",
			"expected PORT, ADDR:PORT or [ADDR]:PORT with a numeric address, %s",
			cfg_got(f[0].value, q, sizeof(q)));
}

/* debug: {ip: [ADDR, ...]}: traced from start-up; kept in inet_ntop's form, the form the
 * transports write a source address in, so a trace matches by string. */
static int cfg_debug(struct cfg_parse *p, yaml_node_t *node)
{
	struct cfg_field f[] = {{.name = "ip"}};
	struct config *cfg = p->cfg;
	unsigned char bin[sizeof(struct in6_addr)];
	char sub[CONFIG_PATH_MAX], text[INET6_ADDRSTRLEN], got[80];
	size_t n;
	int err;

	err = cfg_map_fields(p, node, "debug", f, 1);
	if (err || !f[0].value)
		return err;
	err = cfg_sequence(p, f[0].value, "debug.ip");
	if (err)
		return err;
	n = cfg_seq_len(f[0].value);
	if (n == 0)
		return 0;
	cfg->debug_ips = calloc(n, sizeof(*cfg->debug_ips));
	if (!cfg->debug_ips)
		return ENOMEM;
	for (size_t i = 0; i < n; i++) {
		yaml_node_t *item = cfg_seq_item(p, f[0].value, i);
		const char *s = cfg_is_scalar(item) ? cfg_text(item) : "";
		int af = strchr(s, ':') ? AF_INET6 : AF_INET;

		cfg_pathf(sub, "debug.ip[%zu]", i);
		if (inet_pton(af, s, bin) != 1 || !inet_ntop(af, bin, text, sizeof(text)))
			return cfg_fail(p, item, sub, "expected a numeric IP address, %s",
					cfg_got(item, got, sizeof(got)));
		cfg->debug_ips[i] = strdup(text);
		if (!cfg->debug_ips[i])
			return ENOMEM;
		cfg->n_debug_ips++;
	}
	return 0;
}

/* control: {socket: PATH}: where sipregctl reaches this daemon (ops/control.c). */
static int cfg_control(struct cfg_parse *p, yaml_node_t *node)
{
	struct cfg_field f[] = {{.name = "socket"}, {.name = "group"}};
	int err;

	err = cfg_map_fields(p, node, "control", f, 2);
	if (err)
		return err;
	if (f[1].value) {
		err = cfg_string(p, f[1].value, "control.group", &p->cfg->control_group);
		if (err)
			return err;
	}
	if (!f[0].value)
		return 0;
	err = cfg_string(p, f[0].value, "control.socket", &p->cfg->control_socket);
	if (err)
		return err;
	/* sun_path holds 108 bytes on Linux, the NUL included. */
	if (strlen(p->cfg->control_socket) > 107)
		return cfg_fail(p, f[0].value, "control.socket",
				"a Unix socket path is at most 107 bytes");
	return 0;
}

/* qualify: {interval, timeout, maxms, rate, remove_unreachable_after} (ops/qualify.c).
 * The section present turns qualify on with the defaults for what it leaves out. */
static int cfg_qualify(struct cfg_parse *p, yaml_node_t *node)
{
	struct cfg_field f[] = {{.name = "interval"},
				{.name = "timeout"},
				{.name = "maxms"},
				{.name = "rate"},
				{.name = "remove_unreachable_after"}};
	struct qualify_conf *qc = &p->cfg->qualify;
	uint32_t *v[] = {&qc->interval, &qc->timeout, &qc->maxms, &qc->rate,
			 &qc->remove_unreachable_after};
	/* interval 0 turns it off; a ping needs some time to come back; a day between
	 * pings watches nothing. */
	const uint32_t min[] = {0, 10, 1, 1, 0};
	const uint32_t max[] = {86400, 60000, 60000, 100000, UINT32_MAX};
	char path[CONFIG_PATH_MAX];
	int err;

	*qc = (struct qualify_conf){.interval = 60, .timeout = 5000, .maxms = 2000, .rate = 100};
	err = cfg_map_fields(p, node, "qualify", f, sizeof(f) / sizeof(f[0]));
	if (err)
		return err;
	for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
		if (!f[i].value)
			continue;
		cfg_path(path, "qualify", f[i].name);
		err = cfg_uint(p, f[i].value, path, min[i], max[i], v[i]);
		if (err)
			return err;
	}
	/* A ping must be answered or given up before the next one is due. */
	if (qc->interval && (uint64_t)qc->timeout >= (uint64_t)qc->interval * 1000)
		return cfg_fail(p, f[1].value ? f[1].value : f[0].value, "qualify.timeout",
				"%" PRIu32 " ms is not below the interval (%" PRIu32 " s)",
				qc->timeout, qc->interval);
	return 0;
}

/* A user provisioned in domain (NULL: any) needs a secret unless auth is off there. */
static bool cfg_secret_required(const char *domain, void *arg)
{
	const struct auth_conf *ac = arg;

	if (!ac->enabled)
		return false;
	for (size_t i = 0; domain && i < ac->n_off_domains; i++) {
		if (strcmp(domain, ac->off_domains[i]) == 0)
			return false;
	}
	return true;
}

/* directory: and location: go to the backend each names (src/location/registry.c); users:
 * goes along, for a backend that keeps its directory in the file. */
static int cfg_stores(struct cfg_parse *p, yaml_node_t *root, yaml_node_t *dir,
		      yaml_node_t *loc, bool have_users)
{
	struct config *cfg = p->cfg;
	struct conf_section sroot, sdir, sloc;
	struct location_conf_env env = {
	    .domains = (const char *const *)cfg->registrar.domains,
	    .n_domains = cfg->registrar.n_domains,
	    .secret_required = cfg_secret_required,
	    .arg = &cfg->auth,
	};
	int err;

	cfg_section_init(&sroot, p, root, "");
	env.users = have_users ? &sroot : NULL;
	cfg_section_init(&sdir, p, dir, "directory");
	cfg_section_init(&sloc, p, loc, "location");
	env.section = "directory";
	err = location_conf_parse(&cfg->directory, dir ? &sdir : NULL, &env);
	if (err)
		return err;
	env.section = "location";
	return location_conf_parse(&cfg->location, loc ? &sloc : NULL, &env);
}

static int cfg_defaults(struct config *cfg)
{
	char host[256];
	int n;

	cfg->registrar = (struct registrar_conf){
	    .default_expires = 3600,
	    .min_expires = 60,
	    .max_expires = 7200,
	    .max_contacts = 10,
	    .max_contacts_status = 403,
	    .unknown_domain_status = 404,
	    .unknown_user_status = 404,
	};
	cfg->auth.enabled = true;
	cfg->auth.nonce_ttl = 300;
	cfg->auth.ban.max_failures = 10;
	cfg->auth.ban.window = 60;
	cfg->auth.ban.ban_time = 300;
	cfg->auth.ban.action = BAN_REPLY_403;
	if (cfg_ua_rules_default(&cfg->auth) != 0)
		return ENOMEM;
	cfg->limits = (struct limits_conf){
	    .max_message_size = 65535,
	    .max_tcp_connections = 10000,
	    .max_tcp_connections_per_source = 256,
	    .tcp_output_budget = 64u * 1024 * 1024,
	    .tcp_max_output = 256u * 1024,
	    .tcp_output_timeout = 30,
	    .tcp_idle_timeout = 600,
	    .max_transactions = 2000000,
	    .max_pending = 10000,
	    .max_queue_delay_ms = 250,
	    .max_backend_delay_ms = 1000,
	};
	cfg->log_level = LOG_INFO;
	cfg->metrics.health_window = 5;
	if (gethostname(host, sizeof(host)) != 0)
		strcpy(host, "localhost");
	host[sizeof(host) - 1] = '\0';
	n = asprintf(&cfg->instance_id, "%s:%ld", host, (long)getpid());
	if (n < 0)
		cfg->instance_id = NULL;
	if (!cfg->instance_id)
		return ENOMEM;
	return 0;
}

static int cfg_instance_id(struct cfg_parse *p, yaml_node_t *node)
{
	char *s = NULL;
	int err;

	err = cfg_string(p, node, "instance_id", &s);
	if (err)
		return err;
	free(p->cfg->instance_id);
	p->cfg->instance_id = s;
	for (; *s; s++) {
		if (iscntrl((unsigned char)*s) || isspace((unsigned char)*s))
			return cfg_fail(p, node, "instance_id", "must not contain spaces");
	}
	if (strlen(p->cfg->instance_id) > 255)
		return cfg_fail(p, node, "instance_id", "longer than 255 bytes");
	return 0;
}

/* trusted_sources: ["10.0.0.0/8", "192.0.2.7", "2001:db8::/32"], numeric only. */
static int cfg_trusted_sources(struct cfg_parse *p, yaml_node_t *node)
{
	static const char usage[] =
	    "expected an IPv4 or IPv6 address or prefix (\"10.0.0.0/8\", "
	    "\"192.0.2.7\", \"2001:db8::/32\")";
	char sub[CONFIG_PATH_MAX], got[80], q[48], net[NETADDR_PREFIX_STRLEN];
	struct netaddr_prefix pfx;
	size_t n;
	int err;

	err = cfg_sequence(p, node, "trusted_sources");
	if (err)
		return err;
	err = netaddr_set_alloc(&p->cfg->trusted_sources);
	if (err)
		return err;
	n = cfg_seq_len(node);
	for (size_t i = 0; i < n; i++) {
		yaml_node_t *item = cfg_seq_item(p, node, i);

		cfg_pathf(sub, "trusted_sources[%zu]", i);
		if (!cfg_is_scalar(item) || cfg_is_null(item) ||
		    strlen(cfg_text(item)) != item->data.scalar.length)
			return cfg_fail(p, item, sub, "%s, %s", usage,
					cfg_got(item, got, sizeof(got)));
		err = netaddr_prefix_parse(cfg_text(item), &pfx);
		if (err == ERANGE)
			return cfg_fail(p, item, sub,
					"\"%s\": the prefix length is at most 32 for IPv4, 128 "
					"for IPv6",
					cfg_quote(item, q, sizeof(q)));
		if (err == EDOM) /* a typo that would trust more than meant, or less */
			return cfg_fail(
			    p, item, sub,
			    "\"%s\" has address bits set past the prefix length (the "
			    "network is %s)",
			    cfg_quote(item, q, sizeof(q)),
			    netaddr_prefix_format(&pfx, net, sizeof(net)));
		if (err)
			return cfg_fail(p, item, sub, "%s, got \"%s\"", usage,
					cfg_quote(item, q, sizeof(q)));
		err = netaddr_set_add(p->cfg->trusted_sources, &pfx);
		if (err == EEXIST)
			return cfg_fail(p, item, sub, "%s listed twice",
					netaddr_prefix_format(&pfx, net, sizeof(net)));
		if (err)
			return err;
	}
	return 0;
}

/* Walks the root mapping in dependency order (see DESIGN above). */
static int cfg_root(struct cfg_parse *p, yaml_node_t *root)
{
	enum {
		F_INSTANCE,
		F_LISTEN,
		F_DOMAINS,
		F_REGISTRAR,
		F_DIRECTORY,
		F_LOCATION,
		F_USERS,
		F_AUTH,
		F_LIMITS,
		F_LOG,
		F_TRUSTED,
		F_CONTROL,
		F_QUALIFY,
		F_METRICS,
		F_DEBUG,
		F_USER,
		F_GROUP,
		F_N
	};
	struct cfg_field f[F_N] = {
	    [F_INSTANCE] = {.name = "instance_id"},
	    [F_LISTEN] = {.name = "listen"},
	    [F_DOMAINS] = {.name = "domains"},
	    [F_REGISTRAR] = {.name = "registrar"},
	    [F_DIRECTORY] = {.name = "directory"},
	    [F_LOCATION] = {.name = "location"},
	    [F_USERS] = {.name = "users"},
	    [F_AUTH] = {.name = "auth"},
	    [F_LIMITS] = {.name = "limits"},
	    [F_LOG] = {.name = "log"},
	    [F_TRUSTED] = {.name = "trusted_sources"},
	    [F_CONTROL] = {.name = "control"},
	    [F_QUALIFY] = {.name = "qualify"},
	    [F_METRICS] = {.name = "metrics"},
	    [F_DEBUG] = {.name = "debug"},
	    [F_USER] = {.name = "user"},
	    [F_GROUP] = {.name = "group"},
	};
	struct config *cfg = p->cfg;
	int err;

	if (root && cfg_is_null(root))
		root = NULL;
	if (root) {
		err = cfg_map_fields(p, root, "", f, F_N);
		if (err)
			return err;
	}
	if (f[F_INSTANCE].value) {
		err = cfg_instance_id(p, f[F_INSTANCE].value);
		if (err)
			return err;
	}
	err = f[F_LISTEN].value ? cfg_listen(p, f[F_LISTEN].value) : cfg_listen_default(cfg);
	if (err)
		return err;
	if (f[F_DOMAINS].value) {
		err = cfg_domain_list(p, f[F_DOMAINS].value, "domains", false,
				      &cfg->registrar.domains, &cfg->registrar.n_domains);
		if (err)
			return err;
	}
	if (f[F_REGISTRAR].value) {
		err = cfg_registrar(p, f[F_REGISTRAR].value);
		if (err)
			return err;
	}
	if (f[F_AUTH].value) {
		err = cfg_auth(p, f[F_AUTH].value);
		if (err)
			return err;
	}
	/* After domains and auth: a user names domains and may need a secret. */
	err = cfg_stores(p, root, f[F_DIRECTORY].value, f[F_LOCATION].value,
			 f[F_USERS].value != NULL);
	if (err)
		return err;
	if (f[F_LIMITS].value) {
		err = cfg_limits(p, f[F_LIMITS].value);
		if (err)
			return err;
	}
	if (f[F_LOG].value) {
		err = cfg_log(p, f[F_LOG].value);
		if (err)
			return err;
	}
	if (f[F_CONTROL].value) {
		err = cfg_control(p, f[F_CONTROL].value);
		if (err)
			return err;
	}
	if (f[F_TRUSTED].value) {
		err = cfg_trusted_sources(p, f[F_TRUSTED].value);
		if (err)
			return err;
	}
	if (f[F_QUALIFY].value) {
		err = cfg_qualify(p, f[F_QUALIFY].value);
		if (err)
			return err;
	}
	if (f[F_METRICS].value) {
		err = cfg_metrics(p, f[F_METRICS].value);
		if (err)
			return err;
	}
	if (f[F_DEBUG].value) {
		err = cfg_debug(p, f[F_DEBUG].value);
		if (err)
			return err;
	}
	if (f[F_USER].value) {
		err = cfg_string(p, f[F_USER].value, "user", &cfg->run_user);
		if (err)
			return err;
	}
	if (f[F_GROUP].value) {
		err = cfg_string(p, f[F_GROUP].value, "group", &cfg->run_group);
		if (err)
			return err;
	}
	return 0;
}

static int cfg_parse_doc(struct cfg_parse *p, const char *yaml, size_t len)
{
	yaml_parser_t parser;
	yaml_document_t doc, extra;
	bool have_doc = false;
	int err = 0;

	if (!yaml_parser_initialize(&parser))
		return ENOMEM;
	yaml_parser_set_input_string(&parser, (const unsigned char *)yaml, len);
	if (!yaml_parser_load(&parser, &doc)) {
		err = parser.error == YAML_MEMORY_ERROR ? ENOMEM : EINVAL;
		if (err == EINVAL && p->err && p->errlen)
			snprintf(p->err, p->errlen, "%s:%lu: YAML syntax error: %s%s%s",
				 p->name, (unsigned long)parser.problem_mark.line + 1,
				 parser.problem ? parser.problem : "malformed",
				 parser.context ? " " : "",
				 parser.context ? parser.context : "");
		goto out;
	}
	have_doc = true;
	/* A second document would be silently ignored: refuse it. */
	if (!yaml_parser_load(&parser, &extra)) {
		err = EINVAL;
		if (p->err && p->errlen)
			snprintf(p->err, p->errlen, "%s:%lu: YAML syntax error: %s", p->name,
				 (unsigned long)parser.problem_mark.line + 1,
				 parser.problem ? parser.problem : "malformed");
		goto out;
	}
	if (yaml_document_get_root_node(&extra)) {
		err = EINVAL;
		if (p->err && p->errlen)
			snprintf(p->err, p->errlen, "%s:%lu: only one YAML document is allowed",
				 p->name, (unsigned long)extra.start_mark.line + 1);
		yaml_document_delete(&extra);
		goto out;
	}
	yaml_document_delete(&extra);
	p->doc = &doc;
	err = cfg_root(p, yaml_document_get_root_node(&doc));
out:
	if (have_doc)
		yaml_document_delete(&doc);
	yaml_parser_delete(&parser);
	return err;
}

int config_load_string(struct config **cfgp, const char *yaml, size_t len, const char *name,
		       char *err, size_t errlen)
{
	struct cfg_parse p = {.name = name ? name : "(config)", .err = err, .errlen = errlen};
	struct config *cfg;
	int rc;

	if (!cfgp || (!yaml && len))
		return EINVAL;
	*cfgp = NULL;
	if (err && errlen)
		err[0] = '\0';
	cfg = calloc(1, sizeof(*cfg));
	if (!cfg)
		return ENOMEM;
	p.cfg = cfg;
	rc = cfg_defaults(cfg);
	if (rc)
		goto out;
	rc = cfg_parse_doc(&p, yaml ? yaml : "", len);
out:
	if (rc == ENOMEM && err && errlen && !err[0])
		snprintf(err, errlen, "%s: out of memory", p.name);
	if (rc) {
		config_free(&cfg);
		return rc;
	}
	*cfgp = cfg;
	return 0;
}

/* Reads the file whole: configs are small, and one buffer gives libyaml exact marks. */
static int cfg_read_file(const char *path, char **bufp, size_t *lenp)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL, *nbuf;
	size_t len = 0, cap = 0, n;
	int err = 0;

	if (!f)
		return errno;
	for (;;) {
		if (len == cap) {
			cap = cap ? cap * 2 : 8192;
			if (cap > CONFIG_MAX_FILE + 1) {
				err = EFBIG;
				goto out;
			}
			nbuf = realloc(buf, cap);
			if (!nbuf) {
				err = ENOMEM;
				goto out;
			}
			buf = nbuf;
		}
		n = fread(buf + len, 1, cap - len, f);
		len += n;
		if (n == 0) {
			if (ferror(f))
				err = EIO;
			break;
		}
	}
out:
	fclose(f);
	if (err) {
		free(buf);
		return err;
	}
	*bufp = buf;
	*lenp = len;
	return 0;
}

int config_load(struct config **cfgp, const char *path, char *err, size_t errlen)
{
	char *buf = NULL;
	size_t len = 0;
	int rc;

	if (!cfgp || !path)
		return EINVAL;
	*cfgp = NULL;
	rc = cfg_read_file(path, &buf, &len);
	if (rc) {
		if (err && errlen)
			snprintf(err, errlen, "%s: cannot read: %s", path, strerror(rc));
		return rc;
	}
	rc = config_load_string(cfgp, buf, len, path, err, errlen);
	free(buf);
	if (rc)
		return rc;
	(*cfgp)->path = strdup(path);
	if (!(*cfgp)->path) {
		config_free(cfgp);
		if (err && errlen)
			snprintf(err, errlen, "%s: out of memory", path);
		return ENOMEM;
	}
	return 0;
}

void config_free(struct config **cfgp)
{
	struct config *cfg;

	if (!cfgp || !*cfgp)
		return;
	cfg = *cfgp;
	free(cfg->path);
	free(cfg->listen);
	cfg_strv_free(&cfg->registrar.domains, &cfg->registrar.n_domains);
	location_conf_free(&cfg->directory);
	location_conf_free(&cfg->location);
	free(cfg->auth.secret_file);
	cfg_strv_free(&cfg->auth.off_domains, &cfg->auth.n_off_domains);
	cfg_ua_rules_free(&cfg->auth);
	free(cfg->instance_id);
	free(cfg->control_socket);
	free(cfg->control_group);
	free(cfg->run_user);
	free(cfg->run_group);
	cfg_strv_free(&cfg->debug_ips, &cfg->n_debug_ips);
	netaddr_set_free(&cfg->trusted_sources);
	free(cfg);
	*cfgp = NULL;
}
