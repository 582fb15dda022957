/* The YAML walk every config section uses, and conf.h on top of it for the sections
 * backends own: typed values with "file:line: key.path: why" on every mistake. */
#include "util/yaml.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

unsigned long cfg_line(const yaml_node_t *node)
{
	return node ? (unsigned long)node->start_mark.line + 1 : 1;
}

/* Writes the one-line message and returns EINVAL, so callers can `return cfg_fail(...)`. */
__attribute__((format(printf, 4, 5))) int
cfg_fail(struct cfg_parse *p, const yaml_node_t *node, const char *path, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (!p->err || p->errlen == 0)
		return EINVAL;
	if (path && *path)
		n = snprintf(p->err, p->errlen, "%s:%lu: %s: ", p->name, cfg_line(node), path);
	else
		n = snprintf(p->err, p->errlen, "%s:%lu: ", p->name, cfg_line(node));
	if (n < 0 || (size_t)n >= p->errlen)
		return EINVAL;
	va_start(ap, fmt);
	vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
	va_end(ap);
	return EINVAL;
}

/* Key paths for messages ("users[2].aliases[0]"); truncation only shortens a message. */
__attribute__((format(printf, 2, 3))) void cfg_pathf(char *buf, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, CONFIG_PATH_MAX, fmt, ap);
	va_end(ap);
}

void cfg_path(char *buf, const char *parent, const char *key)
{
	if (parent && *parent)
		cfg_pathf(buf, "%s.%s", parent, key);
	else
		cfg_pathf(buf, "%s", key);
}

const char *cfg_node_kind(const yaml_node_t *node)
{
	switch (node->type) {
	case YAML_MAPPING_NODE:
		return "a mapping";
	case YAML_SEQUENCE_NODE:
		return "a list";
	default:
		return "a scalar";
	}
}

bool cfg_is_scalar(const yaml_node_t *node)
{
	return node->type == YAML_SCALAR_NODE;
}

const char *cfg_text(const yaml_node_t *node)
{
	return (const char *)node->data.scalar.value;
}

/* A plain empty, "~" or "null" scalar: YAML's "no value". */
bool cfg_is_null(const yaml_node_t *node)
{
	const char *s;

	if (!cfg_is_scalar(node) || node->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return false;
	s = cfg_text(node);
	return *s == '\0' || strcmp(s, "~") == 0 || strcasecmp(s, "null") == 0;
}

/* Copies a scalar's text for a message, shortened and with control bytes replaced, so a
 * message stays one line. Never used on secrets. */
const char *cfg_quote(const yaml_node_t *node, char *buf, size_t size)
{
	size_t i, len;
	const char *s;

	if (!cfg_is_scalar(node))
		return cfg_node_kind(node);
	s = cfg_text(node);
	len = node->data.scalar.length;
	if (len > size - 4) {
		len = size - 4;
		memcpy(buf + len, "...", 4);
	} else {
		buf[len] = '\0';
	}
	for (i = 0; i < len; i++)
		buf[i] = (s[i] < 0x20 || s[i] == 0x7f) ? '?' : s[i];
	return buf;
}

/* "got \"abc\"" or "got a mapping", for type errors. */
const char *cfg_got(const yaml_node_t *node, char *buf, size_t size)
{
	char q[48];

	if (!cfg_is_scalar(node))
		snprintf(buf, size, "got %s", cfg_node_kind(node));
	else if (cfg_is_null(node))
		snprintf(buf, size, "got nothing");
	else
		snprintf(buf, size, "got \"%s\"", cfg_quote(node, q, sizeof(q)));
	return buf;
}

/* Checks that node is a mapping whose keys are all among fields[] (each at most once) and
 * fills fields[i].key/value; absent keys stay NULL. */
int cfg_map_fields(struct cfg_parse *p, yaml_node_t *node, const char *path,
			  struct cfg_field *fields, size_t n_fields)
{
	char got[80], known[256], q[48], sub[CONFIG_PATH_MAX];
	yaml_node_pair_t *pair;
	size_t i, off;

	if (node->type != YAML_MAPPING_NODE)
		return cfg_fail(p, node, path, "expected a mapping, %s",
				cfg_got(node, got, sizeof(got)));
	for (pair = node->data.mapping.pairs.start; pair < node->data.mapping.pairs.top;
	     pair++) {
		yaml_node_t *k = yaml_document_get_node(p->doc, pair->key);
		yaml_node_t *v = yaml_document_get_node(p->doc, pair->value);

		if (!k || !v || !cfg_is_scalar(k))
			return cfg_fail(p, k ? k : node, path, "keys must be plain names");
		for (i = 0; i < n_fields; i++) {
			if (strcmp(cfg_text(k), fields[i].name) == 0)
				break;
		}
		if (i == n_fields) {
			off = 0;
			known[0] = '\0';
			for (size_t j = 0; j < n_fields && off < sizeof(known); j++) {
				int w = snprintf(known + off, sizeof(known) - off, "%s%s",
						 j ? ", " : "", fields[j].name);
				if (w < 0)
					break;
				off += (size_t)w;
			}
			cfg_path(sub, path, cfg_quote(k, q, sizeof(q)));
			return cfg_fail(p, k, sub, "unknown key (known: %s)", known);
		}
		if (fields[i].value) {
			cfg_path(sub, path, fields[i].name);
			return cfg_fail(p, k, sub, "duplicate key (first on line %lu)",
					cfg_line(fields[i].key));
		}
		fields[i].key = k;
		fields[i].value = v;
	}
	return 0;
}

/* A non-empty string without NUL bytes. *sp is strdup'ed: the caller frees it. */
int cfg_string(struct cfg_parse *p, yaml_node_t *node, const char *path, char **sp)
{
	char got[80];
	char *s;

	if (!cfg_is_scalar(node) || cfg_is_null(node) || node->data.scalar.length == 0)
		return cfg_fail(p, node, path, "expected a non-empty string, %s",
				cfg_got(node, got, sizeof(got)));
	if (strlen(cfg_text(node)) != node->data.scalar.length)
		return cfg_fail(p, node, path, "contains a NUL byte");
	s = strdup(cfg_text(node));
	if (!s)
		return ENOMEM;
	free(*sp);
	*sp = s;
	return 0;
}

/* Plain decimal digits only: "3600" quoted is a string in YAML and "1e3" is no count. */
int cfg_uint(struct cfg_parse *p, yaml_node_t *node, const char *path, uint32_t min,
		    uint32_t max, uint32_t *vp)
{
	char got[80];
	const char *s;
	uint64_t v = 0;
	size_t i;

	if (!cfg_is_scalar(node) || node->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		goto bad;
	s = cfg_text(node);
	if (node->data.scalar.length == 0 || node->data.scalar.length > 10)
		goto bad;
	for (i = 0; s[i]; i++) {
		if (!isdigit((unsigned char)s[i]))
			goto bad;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	if (v < min || v > max)
		goto bad;
	*vp = (uint32_t)v;
	return 0;
bad:
	return cfg_fail(p, node, path, "expected an integer %lu..%lu, %s", (unsigned long)min,
			(unsigned long)max, cfg_got(node, got, sizeof(got)));
}

/* YAML 1.1 booleans, which is what an operator writing `auth: off` means. Quoted or not:
 * YAML 1.2 tools quote "off" to keep it a word, and the word is what is meant. */
int cfg_bool_text(const yaml_node_t *node, bool *vp)
{
	static const char *const yes[] = {"true", "yes", "on"};
	static const char *const no[] = {"false", "no", "off"};
	const char *s;

	if (!cfg_is_scalar(node))
		return EINVAL;
	s = cfg_text(node);
	if (strlen(s) != node->data.scalar.length) /* "off\0..." is not off */
		return EINVAL;
	for (size_t i = 0; i < 3; i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*vp = true;
			return 0;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*vp = false;
			return 0;
		}
	}
	return EINVAL;
}

int cfg_bool(struct cfg_parse *p, yaml_node_t *node, const char *path, bool *vp)
{
	char got[80];

	if (cfg_bool_text(node, vp) != 0)
		return cfg_fail(p, node, path, "expected true or false (on/off), %s",
				cfg_got(node, got, sizeof(got)));
	return 0;
}

/* One of two SIP status codes, e.g. 403 or 404. */
int cfg_status(struct cfg_parse *p, yaml_node_t *node, const char *path, int a, int b,
		      int *vp)
{
	char got[80];
	uint32_t v;

	if (cfg_is_scalar(node) && node->data.scalar.length == 3 &&
	    isdigit((unsigned char)cfg_text(node)[0])) {
		v = (uint32_t)strtoul(cfg_text(node), NULL, 10);
		if ((int)v == a || (int)v == b) {
			*vp = (int)v;
			return 0;
		}
	}
	return cfg_fail(p, node, path, "expected %d or %d, %s", a, b,
			cfg_got(node, got, sizeof(got)));
}

int cfg_sequence(struct cfg_parse *p, yaml_node_t *node, const char *path)
{
	char got[80];

	if (node->type != YAML_SEQUENCE_NODE)
		return cfg_fail(p, node, path, "expected a list, %s",
				cfg_got(node, got, sizeof(got)));
	return 0;
}

size_t cfg_seq_len(const yaml_node_t *node)
{
	return (size_t)(node->data.sequence.items.top - node->data.sequence.items.start);
}

yaml_node_t *cfg_seq_item(struct cfg_parse *p, const yaml_node_t *node, size_t i)
{
	return yaml_document_get_node(p->doc, node->data.sequence.items.start[i]);
}

void cfg_lower(char *s)
{
	for (; *s; s++)
		*s = (char)tolower((unsigned char)*s);
}

void cfg_strv_free(char ***vp, size_t *np)
{
	for (size_t i = 0; i < *np; i++)
		free((*vp)[i]);
	free(*vp);
	*vp = NULL;
	*np = 0;
}

bool cfg_hex_valid(const char *s, size_t len)
{
	if (strlen(s) != len)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (!isxdigit((unsigned char)s[i]))
			return false;
	}
	return true;
}

/* ---- conf.h: the sections backends own --------------------------------------------- */

void cfg_section_init(struct conf_section *s, struct cfg_parse *p, yaml_node_t *node,
		      const char *path)
{
	s->p = p;
	s->node = node;
	cfg_pathf(s->path, "%s", path);
}

/* The value node of key in s, NULL when absent. */
static yaml_node_t *conf_value(const struct conf_section *s, const char *key)
{
	yaml_node_pair_t *pair;

	if (!s->node || s->node->type != YAML_MAPPING_NODE)
		return NULL;
	for (pair = s->node->data.mapping.pairs.start; pair < s->node->data.mapping.pairs.top;
	     pair++) {
		yaml_node_t *k = yaml_document_get_node(s->p->doc, pair->key);

		if (k && cfg_is_scalar(k) && strcmp(cfg_text(k), key) == 0)
			return yaml_document_get_node(s->p->doc, pair->value);
	}
	return NULL;
}

int conf_keys(const struct conf_section *s, const char *const *keys, size_t n)
{
	struct cfg_field *f;
	int err;

	if (!s->node)
		return 0;
	f = calloc(n ? n : 1, sizeof(*f));
	if (!f)
		return ENOMEM;
	for (size_t i = 0; i < n; i++)
		f[i].name = keys[i];
	err = cfg_map_fields(s->p, s->node, s->path, f, n);
	free(f);
	return err;
}

bool conf_has(const struct conf_section *s, const char *key)
{
	return conf_value(s, key) != NULL;
}

int conf_string(const struct conf_section *s, const char *key, char **vp)
{
	yaml_node_t *v = conf_value(s, key);
	char path[CONFIG_PATH_MAX];

	if (!v)
		return 0;
	cfg_path(path, s->path, key);
	return cfg_string(s->p, v, path, vp);
}

int conf_uint(const struct conf_section *s, const char *key, uint32_t min, uint32_t max,
	      uint32_t *vp)
{
	yaml_node_t *v = conf_value(s, key);
	char path[CONFIG_PATH_MAX];

	if (!v)
		return 0;
	cfg_path(path, s->path, key);
	return cfg_uint(s->p, v, path, min, max, vp);
}

int conf_bool(const struct conf_section *s, const char *key, bool *vp)
{
	yaml_node_t *v = conf_value(s, key);
	char path[CONFIG_PATH_MAX];

	if (!v)
		return 0;
	cfg_path(path, s->path, key);
	return cfg_bool(s->p, v, path, vp);
}

int conf_strings(const struct conf_section *s, const char *key, char ***vp, size_t *n_r)
{
	yaml_node_t *v = conf_value(s, key);
	char path[CONFIG_PATH_MAX], sub[CONFIG_PATH_MAX];
	char **out;
	size_t n;
	int err;

	*vp = NULL;
	*n_r = 0;
	if (!v)
		return 0;
	cfg_path(path, s->path, key);
	err = cfg_sequence(s->p, v, path);
	if (err)
		return err;
	n = cfg_seq_len(v);
	if (n == 0)
		return 0;
	out = calloc(n, sizeof(*out));
	if (!out)
		return ENOMEM;
	for (size_t i = 0; i < n; i++) {
		cfg_pathf(sub, "%s[%zu]", path, i);
		err = cfg_string(s->p, cfg_seq_item(s->p, v, i), sub, &out[i]);
		if (err) {
			size_t k = i;

			cfg_strv_free(&out, &k);
			return err;
		}
	}
	*vp = out;
	*n_r = n;
	return 0;
}

size_t conf_count(const struct conf_section *s, const char *key)
{
	yaml_node_t *v = conf_value(s, key);

	return v && v->type == YAML_SEQUENCE_NODE ? cfg_seq_len(v) : 0;
}

int conf_each(const struct conf_section *s, const char *key, conf_item_h *h, void *arg)
{
	yaml_node_t *v = conf_value(s, key);
	char path[CONFIG_PATH_MAX], got[80];
	struct conf_section item;
	int err;

	if (!v)
		return 0;
	cfg_path(path, s->path, key);
	err = cfg_sequence(s->p, v, path);
	if (err)
		return err;
	for (size_t i = 0; i < cfg_seq_len(v); i++) {
		yaml_node_t *node = cfg_seq_item(s->p, v, i);

		item.p = s->p;
		item.node = node;
		cfg_pathf(item.path, "%s[%zu]", path, i);
		if (node->type != YAML_MAPPING_NODE)
			return cfg_fail(s->p, node, item.path, "expected a mapping, %s",
					cfg_got(node, got, sizeof(got)));
		err = h(&item, i, arg);
		if (err)
			return err;
	}
	return 0;
}

int conf_map(const struct conf_section *s, const char *key, conf_item_h *h, void *arg)
{
	yaml_node_t *v = conf_value(s, key);
	struct conf_section sub;
	char got[80];

	if (!v)
		return 0;
	sub.p = s->p;
	sub.node = v;
	cfg_path(sub.path, s->path, key);
	if (v->type != YAML_MAPPING_NODE)
		return cfg_fail(s->p, v, sub.path, "expected a mapping, %s",
				cfg_got(v, got, sizeof(got)));
	return h(&sub, 0, arg);
}

int conf_fail(const struct conf_section *s, const char *key, size_t index, const char *fmt, ...)
{
	yaml_node_t *node = s->node;
	char path[CONFIG_PATH_MAX], msg[256];
	va_list ap;

	cfg_pathf(path, "%s", s->path);
	if (key) {
		yaml_node_t *v = conf_value(s, key);

		cfg_path(path, s->path, key);
		if (v)
			node = v;
		if (v && index != CONF_NO_INDEX && v->type == YAML_SEQUENCE_NODE &&
		    index < cfg_seq_len(v)) {
			char base[CONFIG_PATH_MAX];

			cfg_pathf(base, "%s", path);
			cfg_pathf(path, "%s[%zu]", base, index);
			node = cfg_seq_item(s->p, v, index);
		}
	}
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return cfg_fail(s->p, node, path, "%s", msg);
}
