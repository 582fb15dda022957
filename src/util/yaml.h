/* The YAML walk the config sections share (yaml.c): typed scalars, lists and mappings with
 * "file:line: key.path: why" messages. Private to src/config/; backends see conf.h. */
#ifndef SIPREG_CONFIG_YAML_H
#define SIPREG_CONFIG_YAML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <yaml.h>

#include "sipreg/conf.h"

#define CONFIG_PATH_MAX 128

struct config;

struct cfg_parse {
	yaml_document_t *doc;
	const char *name; /* file name for messages */
	char *err;
	size_t errlen;
	struct config *cfg;
};

/* The value of one known key of a mapping, with the key node for its line. */
struct cfg_field {
	const char *name;
	yaml_node_t *key;
	yaml_node_t *value;
};

/* What conf.h's opaque section is: a mapping node of the document and its key path. */
struct conf_section {
	struct cfg_parse *p;
	yaml_node_t *node;
	char path[CONFIG_PATH_MAX];
};

unsigned long cfg_line(const yaml_node_t *node);
/* Writes the one-line message and returns EINVAL, so callers can `return cfg_fail(...)`. */
__attribute__((format(printf, 4, 5))) int cfg_fail(struct cfg_parse *p, const yaml_node_t *node,
						      const char *path, const char *fmt, ...);
/* Key paths for messages ("users[2].aliases[0]"); truncation only shortens a message. */
__attribute__((format(printf, 2, 3))) void cfg_pathf(char *buf, const char *fmt, ...);
void cfg_path(char *buf, const char *parent, const char *key);
const char *cfg_node_kind(const yaml_node_t *node);
bool cfg_is_scalar(const yaml_node_t *node);
const char *cfg_text(const yaml_node_t *node);
bool cfg_is_null(const yaml_node_t *node);
const char *cfg_quote(const yaml_node_t *node, char *buf, size_t size);
const char *cfg_got(const yaml_node_t *node, char *buf, size_t size);
/* Checks that node is a mapping whose keys are all among fields[] (each at most once) and
 * fills fields[i].key/value; absent keys stay NULL. */
int cfg_map_fields(struct cfg_parse *p, yaml_node_t *node, const char *path,
		   struct cfg_field *fields, size_t n_fields);
/* A non-empty string without NUL bytes. *sp is strdup'ed: the caller frees it. */
int cfg_string(struct cfg_parse *p, yaml_node_t *node, const char *path, char **sp);
int cfg_uint(struct cfg_parse *p, yaml_node_t *node, const char *path, uint32_t min,
	     uint32_t max, uint32_t *vp);
int cfg_bool_text(const yaml_node_t *node, bool *vp);
int cfg_bool(struct cfg_parse *p, yaml_node_t *node, const char *path, bool *vp);
/* One of two SIP status codes, e.g. 403 or 404. */
int cfg_status(struct cfg_parse *p, yaml_node_t *node, const char *path, int a, int b,
	       int *vp);
int cfg_sequence(struct cfg_parse *p, yaml_node_t *node, const char *path);
size_t cfg_seq_len(const yaml_node_t *node);
yaml_node_t *cfg_seq_item(struct cfg_parse *p, const yaml_node_t *node, size_t i);
void cfg_lower(char *s);
void cfg_strv_free(char ***vp, size_t *np);
bool cfg_hex_valid(const char *s, size_t len);

/* A section over node (a mapping, or NULL for an absent one) at path. */
void cfg_section_init(struct conf_section *s, struct cfg_parse *p, yaml_node_t *node,
		      const char *path);

#endif
