/* An arena for libosip2's allocations while one message is parsed: libosip2 allocates each
 * header, URI and parameter on its own and frees them one by one; a parse that fits in its
 * arena is released in one step instead. */
#ifndef SIPREG_OSIP_ARENA_H
#define SIPREG_OSIP_ARENA_H

#include <stdbool.h>
#include <stddef.h>

struct osip_arena;

/* Install the allocator hooks into libosip2. Call once, before any other libosip2 call;
 * outside an arena the hooks are plain malloc, realloc and free. */
void osip_arena_setup(void);

/* A free arena, or NULL when there is none (libosip2 then allocates with malloc as
 * usual). The caller gives it back with osip_arena_put(). */
struct osip_arena *osip_arena_get(void);
/* size bytes from a for the caller's own use (released with a), or NULL when they do not
 * fit: then the caller allocates elsewhere. */
void *osip_arena_alloc(struct osip_arena *a, size_t size);
/* Does p point into a? */
bool osip_arena_holds(const struct osip_arena *a, const void *p);
/* Route the calling thread's libosip2 allocations into a until osip_arena_leave().
 * What does not fit goes to malloc and makes the arena not whole. */
void osip_arena_enter(struct osip_arena *a);
void osip_arena_leave(void);
/* Every allocation made in a stayed in it: what libosip2 built there needs no freeing
 * object by object (osip_message_free may be skipped). */
bool osip_arena_whole(const struct osip_arena *a);
/* Bytes of a in use, for tests. */
size_t osip_arena_used(const struct osip_arena *a);
/* Give *ap back: everything allocated in it is gone. Sets *ap to NULL. */
void osip_arena_put(struct osip_arena **ap);

#endif
