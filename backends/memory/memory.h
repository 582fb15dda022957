/* Inside the memory backend: its configuration, shared by conf.c (which reads it) and
 * memory.c (which loads it). Nothing outside backends/memory/ includes this. */
#ifndef SIPREG_BACKEND_MEMORY_H
#define SIPREG_BACKEND_MEMORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sipreg/location_backend.h"

/* A provisioned user of the top-level users: list. Strings are owned by the mem_conf. */
struct mem_conf_user {
	char *user;
	char *domain;	  /* lower case; NULL = any configured domain */
	char *password;	  /* NULL when HA1s are given */
	char *ha1_md5;	  /* lower-case hex */
	char *ha1_sha256;
	bool auth_off;
	bool enabled;
	uint32_t max_contacts;
	char **aliases;	  /* "user@domain", domain lower case */
	size_t n_aliases;
};

struct mem_conf {
	struct mem_conf_user *users;
	size_t n_users;
};

int mem_configure(void **confp, const struct conf_section *sec,
		  const struct location_conf_env *env);
void mem_conf_free(void *conf);

/* The backend's one export (memory.c), named here for tests that ask location_conf_of(). */
extern const struct location_backend location_backend_memory;

#endif
