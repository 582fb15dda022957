/* Digest authentication (RFC 3261 §22, RFC 2617, RFC 7616, RFC 8760) with stateless,
 * cluster-wide nonces, nonce-count replay detection and brute-force bans. server.c drives
 * it: parse credentials, check the nonce, look the user up, verify, authorize. */
#ifndef SIPREG_AUTH_H
#define SIPREG_AUTH_H

#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"
#include "registrar/creds.h"
#include "registrar/nonce.h"
#include "util/digest.h"
#include "sip/msg.h"
#include "sipreg/location.h"
#include "sip/resp.h"

struct auth;



struct netaddr_set;

/* Loads the secret from conf->secret_file (or makes a random one). trusted (borrowed, may
 * be NULL; it must outlive *ap): sources never banned. Returns 0 or errno (the log says
 * why). *ap: auth_free(). */
int auth_alloc(struct auth **ap, const struct auth_conf *conf,
	       const struct netaddr_set *trusted);
void auth_free(struct auth **ap);

/* The key of our To tags, derived from the nonce secret (auth.secret_file, or the
 * process's random one) under its own label: instances sharing the secret share the tags,
 * and a tag tells nothing about a nonce MAC. *kp: sipresp_tag_key_free(). Returns 0,
 * ENOMEM or EIO. */
int auth_tag_key_alloc(struct auth *a, struct sipresp_tag_key **kp);

/* Is auth required for this domain (auth enabled and the domain not in off_domains)? */
bool auth_required(const struct auth *a, const struct sip_str *domain);

/* Verify the nonce's MAC and age (stateless). */
enum auth_nonce_state auth_nonce_check(const struct auth *a, const struct auth_creds *c,
				       int64_t now);
/* Does the response match the user's credentials for this method? Uses the HA1 for the
 * algorithm, or the password. false when the directory has no secret for the algorithm.
 * u NULL (nobody by that name): false, after the work a user with a password costs, so
 * the answer takes no less time than for a user who exists. */
bool auth_response_ok(const struct auth_creds *c, const struct dir_user *u,
		      const struct sip_str *method);
/* Record (nonce, nc) as used; true when it was already used (replay: challenge anew). */
bool auth_nc_replayed(struct auth *a, const struct auth_creds *c, int64_t now);
/* May the user named in c (found as u) register aor ("user@domain")? */
bool auth_may_register(const struct dir_user *u, const struct sip_str *aor);
/* The digest algorithms a challenge offers, most preferred first. */
struct auth_offer {
	enum digest_alg alg[2];
	size_t n; /* 1 or 2 */
};
/* What a 401 offers user u: the algorithms of the first auth.user_agents rule whose
 * match the request's User-Agent (user_agent, may be NULL) contains (any case), else auth.algorithms; of those, only the ones u
 * has a secret for (an HA1 for it, or a password), since an answer to any other could only
 * fail. When u has a secret for none of them, the ones it has. u NULL (no user to go by):
 * no narrowing, what a user with a password is offered. */
void auth_offer_for(const struct auth *a, const struct sip_str *user_agent,
		    const struct dir_user *u, struct auth_offer *o);
/* Append one WWW-Authenticate challenge per algorithm of offer, in its order, all with one
 * fresh nonce, for realm. */
void auth_challenge(struct auth *a, struct sipresp *r, const struct sip_str *realm,
		    const struct auth_offer *offer, bool stale, int64_t now);

/* Brute-force control: is the source address banned, or username from that address, right
 * now? A trusted source never is. */
bool auth_banned(struct auth *a, const char *ip, const struct sip_str *username, int64_t now);
/* Count a failed attempt (wrong password, unknown user with credentials) against the
 * address and against (username, address); nothing is counted for a trusted source. */
void auth_failure(struct auth *a, const char *ip, const struct sip_str *username, int64_t now);
enum ban_action auth_ban_action(const struct auth *a);

#endif
