/* stop.h: streaming stop-string matcher for generated text.
 *
 * Generated text arrives in pieces (one per token). The matcher passes the
 * text through, except that it holds back any tail that could still turn
 * into a stop string, so the caller never shows text that later has to be
 * taken back:
 *
 *   stop *st = stop_new(stops, n_stops);
 *   for each token:
 *       size_t n = stop_feed(st, piece, piece_len, out, sizeof out, &hit);
 *       show(out, n);
 *       if (hit) break;            // out held the text before the stop string
 *   n = stop_flush(st, out, sizeof out);   // end of generation: the rest
 *   show(out, n);
 *
 * Matching is on bytes. A hit happens as soon as the text received so far
 * contains a complete stop string; the text emitted is everything before its
 * earliest occurrence, and nothing after. Text after a hit is ignored.
 * The matcher also never splits a UTF-8 character: an incomplete multi-byte
 * sequence at the end of the text is held until its remaining bytes arrive
 * (or until stop_flush). Invalid UTF-8 passes through unchanged.
 *
 * Output: stop_feed and stop_flush copy at most out_cap bytes; text that did
 * not fit stays pending and comes out on the next stop_feed / stop_flush
 * call (nothing is lost, calling stop_flush until it returns 0 drains it).
 * out_cap >= len + stop_pending(s) always suffices for one call.
 *
 * The matcher copies the stop strings; its only other allocation is the
 * pending buffer, which stays around the longest stop string in size. */
#ifndef BEAST_STOP_H
#define BEAST_STOP_H

#include <stddef.h>

typedef struct stop stop;

/* stops: n NUL-terminated strings (copied). NULL and empty strings are
 * ignored; with none left, all text passes straight through (still keeping
 * UTF-8 characters whole). Returns NULL (err_set) only on no memory. */
stop *stop_new(const char *const *stops, int n);
void stop_free(stop *s);

/* Back to the initial state (no pending text, no hit), same stop strings. */
void stop_reset(stop *s);

/* Feed one piece of text; copies the text that is now final into out and
 * returns its length. *hit (if hit is not NULL) is set to 1 once a stop
 * string has matched, else 0. On no memory the piece is dropped (err_set). */
size_t stop_feed(stop *s, const char *text, size_t len, char *out, size_t out_cap, int *hit);

/* End of generation: copies out the pending text (after a hit, only what was
 * before the stop string) and returns its length. */
size_t stop_flush(stop *s, char *out, size_t out_cap);

/* Bytes currently pending inside the matcher. */
size_t stop_pending(const stop *s);

/* Index (into the array given to stop_new) of the stop string that matched,
 * or -1 if none has. */
int stop_which(const stop *s);

#endif
