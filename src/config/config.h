/* sipregd's configuration: loaded from YAML (libyaml), validated, with every default in
 * one place. docs/configuration.md documents each key. */
#ifndef SIPREG_CONFIG_H
#define SIPREG_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sipreg/location.h"

struct listen_spec {
	enum sip_proto proto;
	char addr[64];      /* numeric IPv4 or IPv6 (no brackets) */
	uint16_t port;
};

enum ban_action { BAN_REPLY_403 = 0, BAN_DROP };

/* auth.user_agents[i]: clients whose User-Agent contains match (any case) are offered
 * algorithms instead of auth.algorithms. */
struct auth_ua_rule {
	char *match;	     /* owned, non-empty */
	int algorithms[2];   /* enum digest_alg values, most preferred first */
	size_t n_algorithms; /* 1 or 2 */
};

/* Until a config says otherwise, clients a test verified to answer SHA-256 get [SHA-256,
 * MD5] (RFC 8760); every other client gets [MD5], which every client in use answers. */
#define AUTH_UA_DEFAULT_MATCH "Linphonec/5."

struct auth_conf {
	bool enabled;               /* `auth: off` -> false; default true */
	char *secret_file;          /* shared nonce secret; NULL = random per process */
	uint32_t nonce_ttl;         /* seconds a nonce stays fresh (default 300) */
	char **off_domains;         /* domains registering without auth */
	size_t n_off_domains;
	struct {
		uint32_t max_failures;  /* failures within window that trigger a ban (default 10) */
		uint32_t window;        /* seconds (default 60) */
		uint32_t ban_time;      /* seconds (default 300) */
		enum ban_action action;
	} ban;
	/* Challenges offered to clients no user_agents rule matches, most preferred first,
	 * as enum digest_alg values (0 = MD5, 1 = SHA-256): `algorithms: [SHA-256, MD5]`.
	 * n_algorithms 0 = the default [MD5]: clients that read only the first challenge
	 * (sipp 3.6) or fail on any algorithm they lack (baresip 1.0) need MD5 alone. */
	int algorithms[2];
	size_t n_algorithms;
	/* First match wins; the default is one rule, AUTH_UA_DEFAULT_MATCH -> [SHA-256, MD5].
	 * `user_agents:` in the file replaces it (`[]`: no rules). */
	struct auth_ua_rule *user_agents;
	size_t n_user_agents;
};

struct registrar_conf {
	uint32_t default_expires;   /* 3600 */
	uint32_t min_expires;       /* 60 */
	uint32_t max_expires;       /* 7200 */
	uint32_t max_contacts;      /* per AOR, 0 = unlimited (default 10) */
	int max_contacts_status;    /* 403 (default) or 503 */
	int unknown_domain_status;  /* 404 (default) or 403 */
	int unknown_user_status;    /* 404 (default) or 403 */
	char **domains;             /* lower case */
	size_t n_domains;
};

/* The largest limits.max_message_size: a UDP datagram's 16-bit length field cannot
 * describe a longer one, and the UDP receive path (net_udp.c) gives each datagram of a
 * batch a buffer of max_message_size + 1 bytes, so a larger value would only make those
 * buffers bigger than anything that can arrive in them (32 of them per process). */
#define CONFIG_MAX_MESSAGE_SIZE 65535

struct limits_conf {
	uint32_t max_message_size;    /* bytes, default 65535, at most CONFIG_MAX_MESSAGE_SIZE */
	uint32_t max_tcp_connections; /* default 10000 */
	/* From one source address (IPv6: one /64); trusted_sources are not capped. 0: no
	 * cap. Default 256. */
	uint32_t max_tcp_connections_per_source;
	/* TCP output not yet taken by the kernel: across all connections (default 64 MiB),
	 * per connection (default 256 KiB, at most the budget), and how long a connection's
	 * output may stay pending before it is closed (seconds, default 30; 0: no limit). */
	uint32_t tcp_output_budget;
	uint32_t tcp_max_output;
	uint32_t tcp_output_timeout;
	uint32_t tcp_idle_timeout;    /* seconds, default 600 */
	uint32_t max_transactions;    /* live server transactions, default 2000000 */
	uint32_t max_pending;         /* backend operations in flight, default 10000 */
	uint32_t max_queue_delay_ms;  /* UDP requests older than this are shed; 0: never */
	uint32_t max_backend_delay_ms; /* 503 while the oldest backend call is older; 0: never */
};

/* qualify: OPTIONS pings of the contacts this instance holds the flow of (ops/qualify.c).
 * interval 0 (the section absent) turns qualify off. */
struct qualify_conf {
	uint32_t interval;  /* seconds between pings of one contact (default 60) */
	uint32_t timeout;   /* ms without an answer: UNREACHABLE (default 5000) */
	uint32_t maxms;     /* ms: a slower answer is LAGGED (default 2000) */
	uint32_t rate;      /* pings per second at most, this instance (default 100) */
	uint32_t remove_unreachable_after; /* seconds UNREACHABLE before unbinding; 0 never */
};

struct netaddr_set;

struct config {
	char *path;
	struct listen_spec *listen;
	size_t n_listen;
	struct registrar_conf registrar;
	/* Parsed by the backend each section names (users: goes to the directory's). */
	struct location_conf *directory;
	struct location_conf *location;
	struct auth_conf auth;
	struct limits_conf limits;
	int log_level;              /* enum log_level */
	int log_target;             /* enum log_target: log.target, stderr (default) or syslog */
	char *instance_id;          /* default: hostname:pid */
	char *control_socket;       /* control.socket: sipregctl's Unix socket; NULL = none */
	struct qualify_conf qualify;
	/* trusted_sources: SBCs and proxies, never banned (netaddr.h); owned, NULL = none. */
	struct netaddr_set *trusted_sources;
	/* metrics.listen: the HTTP endpoint of /metrics and /healthz (ops/metrics.c); off
	 * (port 0) unless configured; a bare port means 127.0.0.1. */
	struct {
		char addr[64]; /* numeric, no brackets */
		uint16_t port;
		uint32_t health_window; /* s: /healthz is 200 while the backend answered within */
	} metrics;
	/* debug.ip: addresses whose SIP messages are traced from start-up and after each
	 * SIGHUP (ops/debug.c), normalised numeric text; owned. */
	char **debug_ips;
	size_t n_debug_ips;
	/* user:, group:: the account sipregd switches to once its sockets are bound; NULL =
	 * stay as started. */
	char *run_user, *run_group;
	/* control.group: the group that may use the control socket (mode 0660); NULL = the
	 * owner only (0600). */
	char *control_group;
};

/* Load and validate a YAML file. On error returns EINVAL (or errno of the open) and writes
 * a one-line message naming the file, line and key into err. *cfgp is owned by the caller:
 * config_free(). */
int config_load(struct config **cfgp, const char *path, char *err, size_t errlen);
/* Same, from a string (tests). name is used in messages. */
int config_load_string(struct config **cfgp, const char *yaml, size_t len, const char *name,
		       char *err, size_t errlen);
void config_free(struct config **cfgp);

/* Is domain (any case) one of registrar.domains? */
bool config_domain_known(const struct config *cfg, const char *domain, size_t len);

#endif
