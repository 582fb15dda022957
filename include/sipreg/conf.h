/* The config file as a backend sees it: the mapping of the section it owns, read through
 * typed getters that report mistakes the daemon's way ("file:line: key.path: why").
 *
 * A section is borrowed: it is valid only during the call that hands it out (a backend's
 * configure()); copy what you keep. Every getter returns 0, EINVAL (the message is already
 * written; return the code unchanged) or ENOMEM. An absent key is not an error: the
 * out-value keeps what the caller put there, its default. */
#ifndef SIPREG_CONF_H
#define SIPREG_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct conf_section;

/* Refuse every key of s not among keys[0..n-1], and duplicates; call it first. */
int conf_keys(const struct conf_section *s, const char *const *keys, size_t n);
bool conf_has(const struct conf_section *s, const char *key);
/* A non-empty string without NUL bytes; *vp is replaced by a copy the caller frees. */
int conf_string(const struct conf_section *s, const char *key, char **vp);
/* Plain decimal digits within [min, max]. */
int conf_uint(const struct conf_section *s, const char *key, uint32_t min, uint32_t max,
	      uint32_t *vp);
/* true/false, yes/no, on/off, quoted or not. */
int conf_bool(const struct conf_section *s, const char *key, bool *vp);
/* A list of non-empty strings: *vp (n_r entries) is owned by the caller, who frees each
 * string and the array. */
int conf_strings(const struct conf_section *s, const char *key, char ***vp, size_t *n_r);

/* For a list of mappings at key: h(item, i, arg) for each entry in order, stopping at the
 * first error, which is returned. item is borrowed for the call. */
typedef int(conf_item_h)(const struct conf_section *item, size_t i, void *arg);
int conf_each(const struct conf_section *s, const char *key, conf_item_h *h, void *arg);
/* For a mapping at key: h(sub, 0, arg) once with that mapping as a section, its error
 * returned; nothing when absent. Anything but a mapping at key is refused. */
int conf_map(const struct conf_section *s, const char *key, conf_item_h *h, void *arg);
/* Number of entries of the list at key (0 when absent or not a list). */
size_t conf_count(const struct conf_section *s, const char *key);

/* Report a mistake at key (NULL: the section itself; index != CONF_NO_INDEX: that entry
 * of the list at key) and return EINVAL. */
#define CONF_NO_INDEX ((size_t)-1)
__attribute__((format(printf, 4, 5))) int conf_fail(const struct conf_section *s,
						       const char *key, size_t index,
						       const char *fmt, ...);

#endif
