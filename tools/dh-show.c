/* dh-show — look at what was retrieved: a rankings stream (dh-rank) with
 * the images streams of its queries and database as a PNG contact sheet or
 * a self-contained HTML page, or as text (TSV, JSON lines) for other tools;
 * an images stream as a sheet or as a folder of PNG files.
 *
 *   dh-rank --db db.codes --top 10 < q.codes | dh-show --query q.dhs --db train.dhs -o top10.png
 *   dh-show -f tsv --db db.codes top10.rankings > top10.tsv
 *   dh-show -n 100 -o sample.png train.dhs
 *
 * Rankings rows carry the query's row number in the query input and the
 * database row numbers; dh-show reads only the rows it shows from the
 * images streams (pictures), or the ids and labels of the database (text).
 */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "dh_prog.h"
#include "dhs.h"
#include "picture.h"

static void usage(void) {
    printf("Usage: dh-show [OPTION]... [RANKINGS]\n"
           "  or:  dh-show [OPTION]... IMAGES\n"
           "Show retrieval results: a rankings stream (dh-rank; standard input by default)\n"
           "as a PNG contact sheet (one row per query: the query image, then its top K with\n"
           "their Hamming distances, framed green when relevant (same label), red when not),\n"
           "a self-contained HTML page, or text. An images stream is shown as a grid, or\n"
           "written as PNG files.\n\n"
           "  -f, --format F     png (default), html, tsv, jsonl; for an images stream: png,\n"
           "                     html or files (one PNG per row in the folder -o names)\n"
           "                     (default: from the -o name's extension, else png)\n"
           "      --query FILE   the queries' images stream (png, html)\n"
           "  -D, --db FILE      the database stream, row for row as the ranked codes: images\n"
           "                     (png, html), or any stream with ids (tsv, jsonl; default:\n"
           "                     the database the rankings name)\n"
           "  -k, --top K        results per query (default 10 for pictures, all for text)\n"
           "  -n, --limit N      queries (images) shown, from the first (default 20 (100) for\n"
           "                     pictures, all for text and files; 'all' for all)\n"
           "      --scale S      screen pixels per image pixel (default: images >= 64 pixels)\n"
           "      --columns N    images per row of an images grid (default 10)\n"
           "  -o, --output FILE  write to FILE, atomically (default: standard output)\n"
           "  -q, --quiet        no notes on standard error\n"
           "  -h, --help         show this help and exit\n"
           "  -V, --version      show the version and exit\n\n"
           "Text columns: query, query_id, rank (from 1), db, db_id, dist, relevant\n"
           "(1, 0, or empty when labels are unknown). See dh-show(1).\n");
}

enum fmt { F_AUTO, F_PNG, F_HTML, F_TSV, F_JSONL, F_FILES };

static int parse_format(const char *s, enum fmt *f) {
    static const struct {
        const char *n;
        enum fmt f;
    } v[] = { { "png", F_PNG }, { "html", F_HTML }, { "tsv", F_TSV }, { "jsonl", F_JSONL }, { "files", F_FILES } };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        if (!strcmp(s, v[i].n)) {
            *f = v[i].f;
            return 0;
        }
    return -1;
}

static enum fmt format_from_name(const char *p) {
    const char *d = p ? strrchr(p, '.') : NULL;
    if (!d || strchr(d, '/')) return F_AUTO;
    if (!strcasecmp(d, ".png")) return F_PNG;
    if (!strcasecmp(d, ".html") || !strcasecmp(d, ".htm")) return F_HTML;
    if (!strcasecmp(d, ".tsv") || !strcasecmp(d, ".txt")) return F_TSV;
    if (!strcasecmp(d, ".jsonl") || !strcasecmp(d, ".json")) return F_JSONL;
    return F_AUTO;
}

/* ---- rows of a stream, kept by row number -------------------------------------- */
typedef struct rowset {
    char *name;
    int64_t total;  /* rows in the stream                                */
    int64_t n;      /* rows kept                                          */
    int64_t *g;     /* (n) their row numbers, ascending                   */
    int C, H, W;    /* pixels [C,H,W], when kept                          */
    uint8_t *px;    /* (n, C*H*W) or NULL                                 */
    int32_t *label; /* (n) or NULL: the stream has no labels              */
    char **id;      /* (n) or NULL: the stream has no ids                 */
    char **classes; /* class names (meta "classes"), may be NULL          */
    int nclasses;
} rowset;

static void rowset_free(rowset *s) {
    for (int64_t i = 0; s->id && i < s->n; i++) free(s->id[i]);
    for (int i = 0; i < s->nclasses; i++) free(s->classes[i]);
    free(s->classes);
    free(s->id);
    free(s->g);
    free(s->px);
    free(s->label);
    free(s->name);
    memset(s, 0, sizeof *s);
}

static int64_t rowset_find(const rowset *s, int64_t g) {
    int64_t lo = 0, hi = s->n;
    while (lo < hi) {
        int64_t m = lo + (hi - lo) / 2;
        if (s->g[m] < g)
            lo = m + 1;
        else
            hi = m;
    }
    return lo < s->n && s->g[lo] == g ? lo : -1;
}

static void *xrealloc(void *p, size_t n, size_t size) {
    if (size && n > SIZE_MAX / size) dh_die(DH_EXIT_NOMEM, "out of memory");
    void *q = realloc(p, n * size > 0 ? n * size : 1);
    if (!q) dh_die(DH_EXIT_NOMEM, "out of memory");
    return q;
}

static char *xstrndup(const char *s, size_t n) {
    char *r = strndup(s, n);
    if (!r) dh_die(DH_EXIT_NOMEM, "out of memory");
    return r;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* Read the stream r (closed at the end) and keep the rows numbered in want
 * (sorted, unique; nwant rows), or when want is NULL the first `first` rows
 * (first < 0: every row). pixels: require and keep the pixels field. what
 * names the input in messages ("--db"). */
static void rowset_read(rowset *s, dhs_reader *r, const char *what, const int64_t *want, int64_t nwant, int64_t first,
                        int pixels) {
    memset(s, 0, sizeof *s);
    s->name = xstrndup(dhs_reader_name(r), strlen(dhs_reader_name(r)));
    dh_err e;
    const dhs_schema *sc = dhs_reader_schema(r);
    int fp = -1, fl = dhs_field_index(sc, "label"), fi = dhs_field_index(sc, "id");
    if (fl >= 0 && (sc->fields[fl].dtype != DHS_I32 || sc->fields[fl].ndim != 0)) fl = -1;
    if (fi >= 0 && sc->fields[fi].dtype != DHS_STR) fi = -1;
    if (pixels) {
        fp = dhs_field_index(sc, "pixels");
        if (fp < 0 || sc->fields[fp].dtype != DHS_U8 || sc->fields[fp].ndim != 3 ||
            (sc->fields[fp].shape[0] != 1 && sc->fields[fp].shape[0] != 3))
            dh_die(DH_EXIT_FAIL,
                   "%s: %s: a %s stream, not images (pixels u8 [C,H,W], C 1 or 3): give %s an images "
                   "stream",
                   s->name, what, sc->kind, what);
        s->C = (int)sc->fields[fp].shape[0];
        s->H = (int)sc->fields[fp].shape[1];
        s->W = (int)sc->fields[fp].shape[2];
        if (s->H > 4096 || s->W > 4096)
            dh_die(DH_EXIT_FAIL, "%s: images of %dx%d are too large to show", s->name, s->W, s->H);
    } else if (fi < 0) {
        dh_die(DH_EXIT_FAIL, "%s: %s: a %s stream without an id field", s->name, what, sc->kind);
    }
    const dhs_meta *m = dhs_reader_meta(r);
    int nc = dhs_meta_len(m, "classes");
    if (nc > 0) {
        s->classes = xrealloc(NULL, (size_t)nc, sizeof *s->classes);
        for (int i = 0; i < nc; i++) {
            const char *c = dhs_meta_str_at(m, "classes", i);
            s->classes[i] = xstrndup(c ? c : "", c ? strlen(c) : 0);
        }
        s->nclasses = nc;
    }
    size_t rowb = pixels ? (size_t)s->C * s->H * s->W : 0;
    int64_t cap = want ? nwant : 0, k = 0;
    if (want && nwant) {
        s->g = xrealloc(NULL, (size_t)nwant, sizeof *s->g);
        if (pixels) s->px = xrealloc(NULL, (size_t)nwant, rowb);
        if (fl >= 0) s->label = xrealloc(NULL, (size_t)nwant, sizeof *s->label);
        if (fi >= 0) s->id = xrealloc(NULL, (size_t)nwant, sizeof *s->id);
    }
    int64_t g0 = 0;
    dhs_chunk *ch;
    int rc;
    while ((rc = dhs_read_chunk(r, &ch, &e)) == DH_OK) {
        for (int64_t i = 0; i < ch->nrows; i++) {
            int64_t g = g0 + i;
            if (want) {
                while (k < nwant && want[k] < g) k++;
                if (k >= nwant || want[k] != g) continue;
            } else if (first >= 0 && g >= first) {
                continue;
            } else if (s->n == cap) {
                cap = cap ? 2 * cap : 1024;
                s->g = xrealloc(s->g, (size_t)cap, sizeof *s->g);
                if (pixels) s->px = xrealloc(s->px, (size_t)cap, rowb);
                if (fl >= 0) s->label = xrealloc(s->label, (size_t)cap, sizeof *s->label);
                if (fi >= 0) s->id = xrealloc(s->id, (size_t)cap, sizeof *s->id);
            }
            int64_t j = s->n++;
            s->g[j] = g;
            if (pixels) memcpy(s->px + (size_t)j * rowb, (const uint8_t *)ch->col[fp] + (size_t)i * rowb, rowb);
            if (fl >= 0) memcpy(&s->label[j], (const char *)ch->col[fl] + 4 * i, 4);
            if (fi >= 0) {
                size_t len;
                const char *p = dhs_str_at(ch, fi, i, &len);
                s->id[j] = xstrndup(p, len);
            }
        }
        g0 += ch->nrows;
    }
    if (rc != DH_EOF) dh_die_err(&e, NULL);
    s->total = g0;
    dhs_close(r);
}

static void rowset_load(rowset *s, const char *path, const char *what, const int64_t *want, int64_t nwant, int pixels) {
    dh_err e;
    dhs_reader *r = dhs_open_path(path, NULL, &e);
    if (!r) dh_die_err(&e, NULL);
    rowset_read(s, r, what, want, nwant, -1, pixels);
}

static const char *class_name(const rowset *s, int32_t label) {
    return s && s->classes && label >= 0 && label < s->nclasses ? s->classes[label] : NULL;
}

/* ---- the rankings, read up to the limits ------------------------------------------ */
typedef struct query {
    int64_t row;   /* row in the query input */
    int32_t label; /* INT32_MIN: unknown */
    char *id;
    int64_t n; /* results kept */
    int64_t *idx;
    int32_t *dist;
} query;

typedef struct rk {
    dhs_reader *r;
    const char *name;
    int fq, fl, fi, fx, fd;
    int labels, bits;
    int64_t db_rows;
    const char *db;
    dhs_chunk *ch;
    int64_t i; /* next row of ch */
} rk;

static void rk_open(rk *k, dhs_reader *r) {
    memset(k, 0, sizeof *k);
    dh_err e;
    k->r = r;
    k->name = dhs_reader_name(k->r);
    const dhs_schema *s = dhs_reader_schema(k->r);
    if (strcmp(s->kind, "rankings"))
        dh_die(DH_EXIT_FAIL, "%s: a %s stream, not rankings (dh-rank writes them)", k->name, s->kind);
    if ((k->fq = dhs_require_field(s, "query", DHS_I64, 0, &e)) < 0 ||
        (k->fx = dhs_require_field(s, "idx", DHS_I64, 1, &e)) < 0 ||
        (k->fd = dhs_require_field(s, "dist", DHS_I32, 1, &e)) < 0)
        dh_die_err(&e, k->name);
    if (!s->fields[k->fx].variable || !s->fields[k->fd].variable)
        dh_die(DH_EXIT_FAIL, "%s: idx and dist are not variable-length lists", k->name);
    k->fl = dhs_field_index(s, "label");
    if (k->fl >= 0 && (s->fields[k->fl].dtype != DHS_I32 || s->fields[k->fl].ndim != 0)) k->fl = -1;
    k->fi = dhs_field_index(s, "id");
    if (k->fi >= 0 && s->fields[k->fi].dtype != DHS_STR) k->fi = -1;
    const dhs_meta *m = dhs_reader_meta(k->r);
    k->labels = k->fl >= 0;
    dhs_meta_bool(m, "labels", &k->labels);
    if (k->fl < 0) k->labels = 0;
    int64_t v;
    k->bits = dhs_meta_int(m, "bits", &v) == 0 ? (int)v : 0;
    k->db_rows = dhs_meta_int(m, "db_rows", &v) == 0 ? v : -1;
    k->db = dhs_meta_str(m, "db");
}

/* The next query (its first top results), or 0 at the end. */
static int rk_next(rk *k, int64_t top, query *q) {
    dh_err e;
    while (!k->ch || k->i >= k->ch->nrows) {
        int rc = dhs_read_chunk(k->r, &k->ch, &e);
        if (rc == DH_EOF) return 0;
        if (rc) dh_die_err(&e, NULL);
        k->i = 0;
    }
    dhs_chunk *c = k->ch;
    int64_t i = k->i++;
    memset(q, 0, sizeof *q);
    memcpy(&q->row, (const char *)c->col[k->fq] + 8 * i, 8);
    q->label = INT32_MIN;
    if (k->labels) memcpy(&q->label, (const char *)c->col[k->fl] + 4 * i, 4);
    size_t len = 0;
    const char *id = k->fi >= 0 ? dhs_str_at(c, k->fi, i, &len) : "";
    q->id = xstrndup(id, len);
    int64_t n = (int64_t)(c->off[k->fx][i + 1] - c->off[k->fx][i]);
    int64_t nd = (int64_t)(c->off[k->fd][i + 1] - c->off[k->fd][i]);
    if (n != nd)
        dh_die(DH_EXIT_FAIL, "%s: query %lld: %lld rows but %lld distances", k->name, (long long)q->row, (long long)n,
               (long long)nd);
    if (top >= 0 && n > top) n = top;
    q->n = n;
    q->idx = xrealloc(NULL, (size_t)n, sizeof *q->idx);
    q->dist = xrealloc(NULL, (size_t)n, sizeof *q->dist);
    memcpy(q->idx, (const char *)c->col[k->fx] + 8 * c->off[k->fx][i], (size_t)n * 8);
    memcpy(q->dist, (const char *)c->col[k->fd] + 4 * c->off[k->fd][i], (size_t)n * 4);
    for (int64_t j = 0; j < n; j++)
        if (q->idx[j] < 0 || (k->db_rows >= 0 && q->idx[j] >= k->db_rows))
            dh_die(DH_EXIT_FAIL, "%s: query %lld: database row %lld out of range (%lld rows)", k->name,
                   (long long)q->row, (long long)q->idx[j], (long long)k->db_rows);
    return 1;
}

static void query_free(query *q) {
    free(q->id);
    free(q->idx);
    free(q->dist);
}

/* ---- text output ------------------------------------------------------------------ */
static void tsv_str(FILE *f, const char *s) {
    for (; *s; s++) {
        switch (*s) {
        case '\t': fputs("\\t", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\\': fputs("\\\\", f); break;
        default: fputc(*s, f);
        }
    }
}

static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c == '\n')
            fputs("\\n", f);
        else if (c == '\t')
            fputs("\\t", f);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

static void html_str(FILE *f, const char *s) {
    for (; *s; s++) {
        switch (*s) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        default: fputc(*s, f);
        }
    }
}

/* relevance of database row g to query q: 1, 0, or -1 unknown */
static int relevant(const query *q, const rowset *db, int64_t g) {
    if (q->label == INT32_MIN || !db->label) return -1;
    int64_t j = rowset_find(db, g);
    return j < 0 ? -1 : db->label[j] == q->label;
}

static void write_text(FILE *f, enum fmt fm, rk *k, int64_t limit, int64_t top, const rowset *db) {
    if (fm == F_TSV) fputs("query\tquery_id\trank\tdb\tdb_id\tdist\trelevant\n", f);
    query q;
    for (int64_t nq = 0; (limit < 0 || nq < limit) && rk_next(k, top, &q); nq++) {
        for (int64_t j = 0; j < q.n; j++) {
            int64_t dj = rowset_find(db, q.idx[j]);
            const char *dbid = dj >= 0 && db->id ? db->id[dj] : "";
            int rel = relevant(&q, db, q.idx[j]);
            if (fm == F_TSV) {
                fprintf(f, "%lld\t", (long long)q.row);
                tsv_str(f, q.id);
                fprintf(f, "\t%lld\t%lld\t", (long long)j + 1, (long long)q.idx[j]);
                tsv_str(f, dbid);
                fprintf(f, "\t%d\t%s\n", q.dist[j], rel < 0 ? "" : rel ? "1" : "0");
            } else {
                fprintf(f, "{\"query\": %lld, \"query_id\": ", (long long)q.row);
                json_str(f, q.id);
                fprintf(f, ", \"rank\": %lld, \"db\": %lld, \"db_id\": ", (long long)j + 1, (long long)q.idx[j]);
                json_str(f, dbid);
                fprintf(f, ", \"dist\": %d, \"relevant\": %s}\n", q.dist[j], rel < 0 ? "null" : rel ? "true" : "false");
            }
        }
        query_free(&q);
    }
}

/* ---- pictures ------------------------------------------------------------------------ */
static const uint8_t WHITE[3] = { 255, 255, 255 }, INK[3] = { 40, 40, 40 }, GREY[3] = { 150, 150, 150 },
                     GREEN[3] = { 0, 170, 60 }, RED[3] = { 225, 30, 30 }, BLUE[3] = { 30, 90, 220 },
                     LIGHT[3] = { 215, 215, 215 }, RULE[3] = { 190, 190, 190 };

/* a cell: a framed image with two caption lines under it */
typedef struct layout {
    int s, ts;       /* image scale, text scale */
    int iw, ih;      /* image size on the sheet */
    int t;           /* frame thickness */
    int cw, ch;      /* cell size */
    int gap, margin; /* between cells, around the sheet */
    int title_h;     /* title band */
    size_t maxchars; /* caption characters that fit */
} layout;

static void layout_init(layout *L, int W, int H, int scale) {
    L->s = scale > 0 ? scale : (64 + (W > H ? W : H) - 1) / (W > H ? W : H);
    if (L->s < 1) L->s = 1;
    if (L->s > 16) L->s = 16;
    L->iw = W * L->s;
    L->ih = H * L->s;
    L->ts = L->iw >= 120 ? 2 : 1;
    L->t = L->s < 2 ? 2 : L->s > 4 ? 4 : L->s;
    int minw = 12 * DH_FONT_W * L->ts; /* room for 12 characters */
    L->cw = (L->iw > minw ? L->iw : minw) + 2 * L->t;
    L->ch = L->ih + 2 * L->t + 2 * (DH_FONT_H + 2) * L->ts + 4;
    L->gap = 6;
    L->margin = 10;
    L->title_h = (DH_FONT_H + 4) * 2 + 4;
    L->maxchars = (size_t)(L->cw / (DH_FONT_W * L->ts));
}

/* A caption of at most max characters: a longer one keeps its end (the file
 * name of a path), after "..". */
static void caption(char *buf, size_t n, const char *s, size_t max) {
    size_t l = strlen(s);
    if (l > max && max > 3)
        snprintf(buf, n, "..%s", s + l - (max - 2));
    else
        snprintf(buf, n, "%s", s);
}

/* Draw one cell at (x, y): frame colour fr, image, caption lines a and b. */
static void draw_cell(dh_canvas *c, const layout *L, int x, int y, const uint8_t *px, int C, int H, int W,
                      const uint8_t *fr, const char *a, const char *b) {
    int ix = x + L->t + (L->cw - 2 * L->t - L->iw) / 2, iy = y + L->t;
    dh_canvas_frame(c, ix, iy, L->iw, L->ih, L->t, fr);
    if (px) dh_canvas_image(c, ix, iy, px, C, H, W, L->s);
    int ty = y + L->ih + 2 * L->t + 3;
    if (a) dh_canvas_text(c, x, ty, a, L->maxchars, L->ts, INK);
    if (b) dh_canvas_text(c, x, ty + (DH_FONT_H + 2) * L->ts, b, L->maxchars, L->ts, GREY);
}

static void png_out(FILE *f, const dh_canvas *c) {
    dh_err e;
    uint8_t *buf;
    size_t n;
    if (dh_png_encode(c->px, c->w, c->h, 3, 0, &buf, &n, &e)) dh_die_err(&e, NULL);
    fwrite(buf, 1, n, f);
    free(buf);
}

static void base64(FILE *f, const uint8_t *p, size_t n) {
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) | (i + 2 < n ? p[i + 2] : 0);
        fputc(t[v >> 18 & 63], f);
        fputc(t[v >> 12 & 63], f);
        fputc(i + 1 < n ? t[v >> 6 & 63] : '=', f);
        fputc(i + 2 < n ? t[v & 63] : '=', f);
    }
}

/* <img> of a planar image as a data: URI, shown at scale, framed */
static void html_img(FILE *f, const uint8_t *px, int C, int H, int W, int scale, const char *frame) {
    dh_err e;
    uint8_t *buf;
    size_t n;
    if (dh_png_encode(px, W, H, C, 1, &buf, &n, &e)) dh_die_err(&e, NULL);
    fprintf(f, "<img width=\"%d\" height=\"%d\" style=\"border-color:%s\" src=\"data:image/png;base64,", W * scale,
            H * scale, frame);
    base64(f, buf, n);
    fputs("\">", f);
    free(buf);
}

static void html_head(FILE *f, const char *title) {
    fputs("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>", f);
    html_str(f, title);
    fputs("</title>\n<style>body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}"
          "td{vertical-align:top;padding:4px;text-align:center;font-size:12px}"
          "img{image-rendering:pixelated;border:3px solid #ddd;display:block;margin:auto}"
          "td.q{border-right:2px solid #888;padding-right:10px}.g{color:#666}"
          ".rel{color:#00aa3c}.irr{color:#e11e1e}</style></head><body>\n<h3>",
          f);
    html_str(f, title);
    fputs("</h3>\n", f);
}

static const char *css_rgb(const uint8_t *c) {
    static char b[4][24];
    static int k;
    k = (k + 1) & 3;
    snprintf(b[k], sizeof b[k], "rgb(%d,%d,%d)", c[0], c[1], c[2]);
    return b[k];
}

/* Sorted unique copy of v (n values) */
static int64_t uniq(int64_t *v, int64_t n) {
    if (n > 1) qsort(v, (size_t)n, sizeof *v, cmp_i64);
    int64_t m = 0;
    for (int64_t i = 0; i < n; i++)
        if (!m || v[m - 1] != v[i]) v[m++] = v[i];
    return m;
}

static void show_rankings(FILE *f, enum fmt fm, rk *k, int64_t limit, int64_t top, int scale, const char *qpath,
                          const char *dbpath) {
    /* the queries shown and their results */
    query *qs = NULL;
    int64_t nq = 0, nres = 0;
    query q;
    while ((limit < 0 || nq < limit) && rk_next(k, top, &q)) {
        qs = xrealloc(qs, (size_t)nq + 1, sizeof *qs);
        qs[nq++] = q;
        nres += q.n;
    }
    int64_t more = 0;
    while (rk_next(k, 0, &q)) { /* the rest: read (and so checked), counted */
        more++;
        query_free(&q);
    }
    if (more)
        dh_note("showing the first %lld of %lld queries (-n N or -n all for more)", (long long)nq,
                (long long)(nq + more));
    int64_t *wq = xrealloc(NULL, (size_t)nq, sizeof *wq), *wd = xrealloc(NULL, (size_t)nres, sizeof *wd);
    int64_t kk = 0, maxn = 0;
    for (int64_t i = 0; i < nq; i++) {
        wq[i] = qs[i].row;
        for (int64_t j = 0; j < qs[i].n; j++) wd[kk++] = qs[i].idx[j];
        if (qs[i].n > maxn) maxn = qs[i].n;
    }
    int64_t nwq = uniq(wq, nq), nwd = uniq(wd, nres);
    rowset qi, db;
    rowset_load(&qi, qpath, "--query", wq, nwq, 1);
    rowset_load(&db, dbpath, "--db", wd, nwd, 1);
    if (k->db_rows >= 0 && db.total != k->db_rows)
        dh_die(DH_EXIT_FAIL, "%s: %lld rows, but the rankings were made against a database of %lld (%s)", db.name,
               (long long)db.total, (long long)k->db_rows, k->db ? k->db : "?");
    for (int64_t i = 0; i < nq; i++) {
        int64_t j = rowset_find(&qi, qs[i].row);
        if (j < 0)
            dh_die(DH_EXIT_FAIL, "%s: %lld rows, but the rankings have query %lld", qi.name, (long long)qi.total,
                   (long long)qs[i].row);
        if (qs[i].id[0] && qi.id && strcmp(qs[i].id, qi.id[j]))
            dh_die(DH_EXIT_FAIL,
                   "%s: row %lld is '%s', the rankings' query %lld is '%s': not the images the queries were "
                   "encoded from",
                   qi.name, (long long)qs[i].row, qi.id[j], (long long)qs[i].row, qs[i].id);
    }
    int labels = k->labels && db.label;
    char title[512];
    snprintf(title, sizeof title, "%lld quer%s, top %lld of %lld, %d-bit codes%s", (long long)nq, nq == 1 ? "y" : "ies",
             (long long)maxn, (long long)db.total, k->bits,
             labels ? "; green: same label, red: another" : "; labels unknown");
    const rowset *cls = db.classes ? &db : qi.classes ? &qi : NULL;
    char a[256], b[256];
    if (fm == F_PNG) {
        layout L;
        int W = qi.W > db.W ? qi.W : db.W, H = qi.H > db.H ? qi.H : db.H;
        layout_init(&L, W, H, scale);
        int64_t cols = maxn + 1;
        int64_t w = 2 * L.margin + cols * (L.cw + L.gap) + 12, h = 2 * L.margin + L.title_h + nq * (L.ch + L.gap);
        int tw = dh_text_width(title, sizeof title, 1) + 2 * L.margin;
        if (w < tw) w = tw;
        if (w > (1 << 20) || h > (1 << 20))
            dh_die(DH_EXIT_NOMEM, "a sheet of %lldx%lld pixels is too large: show fewer (-n, -k, --scale)",
                   (long long)w, (long long)h);
        dh_canvas c;
        dh_err e;
        if (dh_canvas_init(&c, (int)w, (int)h, WHITE, &e)) dh_die_err(&e, NULL);
        dh_canvas_text(&c, L.margin, L.margin, title, sizeof title, 1, INK);
        snprintf(a, sizeof a, "queries: %s  database: %s", qi.name, db.name);
        dh_canvas_text(&c, L.margin, L.margin + DH_FONT_H + 4, a, sizeof a, 1, GREY);
        for (int64_t i = 0; i < nq; i++) {
            const query *qq = &qs[i];
            int y = L.margin + L.title_h + (int)i * (L.ch + L.gap), x = L.margin;
            int64_t j = rowset_find(&qi, qq->row);
            const char *cn = class_name(cls, qq->label);
            snprintf(a, sizeof a, "query %lld", (long long)qq->row);
            caption(b, sizeof b, cn ? cn : qi.id ? qi.id[j] : "", L.maxchars);
            draw_cell(&c, &L, x, y, qi.px + (size_t)j * qi.C * qi.H * qi.W, qi.C, qi.H, qi.W, BLUE, a, b);
            dh_canvas_fill(&c, x + L.cw + L.gap + 4, y, 2, L.ch, RULE);
            for (int64_t r = 0; r < qq->n; r++) {
                int64_t d = rowset_find(&db, qq->idx[r]);
                int rel = relevant(qq, &db, qq->idx[r]);
                const char *dn = db.label ? class_name(cls, db.label[d]) : NULL;
                snprintf(a, sizeof a, "%lld: d=%d", (long long)r + 1, qq->dist[r]);
                caption(b, sizeof b, dn ? dn : db.id ? db.id[d] : "", L.maxchars);
                draw_cell(&c, &L, x + 12 + (int)(r + 1) * (L.cw + L.gap), y, db.px + (size_t)d * db.C * db.H * db.W,
                          db.C, db.H, db.W,
                          rel < 0 ? LIGHT
                          : rel   ? GREEN
                                  : RED,
                          a, b);
            }
        }
        png_out(f, &c);
        dh_canvas_free(&c);
    } else {
        layout L;
        layout_init(&L, qi.W > db.W ? qi.W : db.W, qi.H > db.H ? qi.H : db.H, scale);
        html_head(f, title);
        fputs("<p class=\"g\">queries: ", f);
        html_str(f, qi.name);
        fputs(", database: ", f);
        html_str(f, db.name);
        fputs("</p>\n<table>\n", f);
        for (int64_t i = 0; i < nq; i++) {
            const query *qq = &qs[i];
            int64_t j = rowset_find(&qi, qq->row);
            const char *cn = class_name(cls, qq->label);
            fputs("<tr><td class=\"q\">", f);
            html_img(f, qi.px + (size_t)j * qi.C * qi.H * qi.W, qi.C, qi.H, qi.W, L.s, css_rgb(BLUE));
            fprintf(f, "query %lld<br><span class=\"g\">", (long long)qq->row);
            html_str(f, qi.id ? qi.id[j] : "");
            if (cn) {
                fputs("<br>", f);
                html_str(f, cn);
            }
            fputs("</span></td>", f);
            for (int64_t r = 0; r < qq->n; r++) {
                int64_t d = rowset_find(&db, qq->idx[r]);
                int rel = relevant(qq, &db, qq->idx[r]);
                const char *dn = db.label ? class_name(cls, db.label[d]) : NULL;
                fputs("<td>", f);
                html_img(f, db.px + (size_t)d * db.C * db.H * db.W, db.C, db.H, db.W, L.s,
                         css_rgb(rel < 0 ? LIGHT
                                 : rel   ? GREEN
                                         : RED));
                fprintf(f, "<span class=\"%s\">%lld: d=%d</span><br><span class=\"g\">",
                        rel < 0 ? "g"
                        : rel   ? "rel"
                                : "irr",
                        (long long)r + 1, qq->dist[r]);
                html_str(f, db.id ? db.id[d] : "");
                if (dn) {
                    fputs("<br>", f);
                    html_str(f, dn);
                }
                fputs("</span></td>", f);
            }
            fputs("</tr>\n", f);
        }
        fputs("</table>\n</body></html>\n", f);
    }
    for (int64_t i = 0; i < nq; i++) query_free(&qs[i]);
    free(qs);
    free(wq);
    free(wd);
    rowset_free(&qi);
    rowset_free(&db);
}

/* An images stream: a grid (png, html) or one PNG file per row (files). */
static void show_images(FILE *f, enum fmt fm, dhs_reader *r, const char *dir, int64_t limit, int scale, int columns) {
    rowset s;
    rowset_read(&s, r, "the input", NULL, 0, limit, 1);
    if (s.total > s.n)
        dh_note("showing the first %lld of %lld images (-n N or -n all for more)", (long long)s.n, (long long)s.total);
    dh_err e;
    if (fm == F_FILES) {
        if (mkdir(dir, 0777) && errno != EEXIST) dh_die(DH_EXIT_IO, "%s: %s", dir, strerror(errno));
        for (int64_t i = 0; i < s.n; i++) {
            char p[4096];
            snprintf(p, sizeof p, "%s/%06lld.png", dir, (long long)s.g[i]);
            uint8_t *buf;
            size_t nb;
            if (dh_png_encode(s.px + (size_t)i * s.C * s.H * s.W, s.W, s.H, s.C, 1, &buf, &nb, &e))
                dh_die_err(&e, NULL);
            dh_outfile of;
            if (dh_out_open(&of, p, &e)) dh_die_err(&e, NULL);
            fwrite(buf, 1, nb, of.f);
            free(buf);
            if (dh_out_commit(&of, &e)) dh_die_err(&e, NULL);
        }
        dh_note("%s: %lld PNG files in %s", s.name, (long long)s.n, dir);
        rowset_free(&s);
        return;
    }
    layout L;
    layout_init(&L, s.W, s.H, scale);
    char title[512], a[256], b[256];
    snprintf(title, sizeof title, "%s: %lld of %lld images, %dx%dx%d", s.name, (long long)s.n, (long long)s.total, s.C,
             s.H, s.W);
    if (fm == F_PNG) {
        int64_t cols = s.n < columns ? s.n : columns, rows = (s.n + columns - 1) / columns;
        int64_t w = 2 * L.margin + cols * (L.cw + L.gap), h = 2 * L.margin + L.title_h + rows * (L.ch + L.gap);
        int tw = dh_text_width(title, sizeof title, 1) + 2 * L.margin;
        if (w < tw) w = tw;
        if (w > (1 << 20) || h > (1 << 20))
            dh_die(DH_EXIT_NOMEM, "a sheet of %lldx%lld pixels is too large: show fewer (-n, --scale)", (long long)w,
                   (long long)h);
        dh_canvas c;
        if (dh_canvas_init(&c, (int)w, (int)h, WHITE, &e)) dh_die_err(&e, NULL);
        dh_canvas_text(&c, L.margin, L.margin, title, sizeof title, 1, INK);
        for (int64_t i = 0; i < s.n; i++) {
            int x = L.margin + (int)(i % columns) * (L.cw + L.gap);
            int y = L.margin + L.title_h + (int)(i / columns) * (L.ch + L.gap);
            const char *cn = s.label ? class_name(&s, s.label[i]) : NULL;
            snprintf(a, sizeof a, "%lld", (long long)s.g[i]);
            caption(b, sizeof b, cn ? cn : s.id ? s.id[i] : "", L.maxchars);
            draw_cell(&c, &L, x, y, s.px + (size_t)i * s.C * s.H * s.W, s.C, s.H, s.W, LIGHT, a, b);
        }
        png_out(f, &c);
        dh_canvas_free(&c);
    } else {
        html_head(f, title);
        fputs("<table>\n", f);
        for (int64_t i = 0; i < s.n; i++) {
            const char *cn = s.label ? class_name(&s, s.label[i]) : NULL;
            if (i % columns == 0) fputs(i ? "</tr>\n<tr>" : "<tr>", f);
            fputs("<td>", f);
            html_img(f, s.px + (size_t)i * s.C * s.H * s.W, s.C, s.H, s.W, L.s, css_rgb(LIGHT));
            fprintf(f, "%lld<br><span class=\"g\">", (long long)s.g[i]);
            html_str(f, s.id ? s.id[i] : "");
            if (cn) {
                fputs("<br>", f);
                html_str(f, cn);
            }
            fputs("</span></td>", f);
        }
        fputs("</tr>\n</table>\n</body></html>\n", f);
    }
    rowset_free(&s);
}

int main(int argc, char **argv) {
    dh_prog_init("dh-show", argc, argv);
    enum { O_QUERY = 256, O_SCALE, O_COLUMNS, O_PROG };
    static const struct option lo[] = {
        { "format", 1, 0, 'f' },        { "query", 1, 0, O_QUERY }, { "db", 1, 0, 'D' },
        { "top", 1, 0, 'k' },           { "limit", 1, 0, 'n' },     { "scale", 1, 0, O_SCALE },
        { "columns", 1, 0, O_COLUMNS }, { "output", 1, 0, 'o' },    DH_COMMON_LONGOPTS(O_PROG)
    };
    enum fmt fm = F_AUTO;
    const char *qpath = NULL, *dbpath = NULL, *out = NULL;
    int64_t top = -2, limit = -2;
    int scale = 0, columns = 10;
    int c;
    while ((c = getopt_long(argc, argv, "f:D:k:n:o:qhV", lo, NULL)) != -1) {
        switch (c) {
        case 'f':
            if (parse_format(optarg, &fm))
                dh_usage_error("--format: '%s' is not png, html, tsv, jsonl or files", optarg);
            break;
        case O_QUERY: qpath = optarg; break;
        case 'D': dbpath = optarg; break;
        case 'k':
            if (!strcmp(optarg, "all"))
                top = -1;
            else if (dh_parse_i64(optarg, 1, INT64_MAX, &top))
                dh_usage_error("--top: '%s' is not a positive number or 'all'", optarg);
            break;
        case 'n':
            if (!strcmp(optarg, "all"))
                limit = -1;
            else if (dh_parse_i64(optarg, 1, INT64_MAX, &limit))
                dh_usage_error("--limit: '%s' is not a positive number or 'all'", optarg);
            break;
        case O_SCALE:
            if (dh_parse_int(optarg, 1, 16, &scale)) dh_usage_error("--scale: '%s' is not in 1..16", optarg);
            break;
        case O_COLUMNS:
            if (dh_parse_int(optarg, 1, 1000, &columns)) dh_usage_error("--columns: '%s' is not in 1..1000", optarg);
            break;
        case 'o': out = optarg; break;
        default:
            if (!dh_common_option(c, O_PROG, usage)) dh_bad_option(argv);
        }
    }
    const char *in = dh_input_arg(argc, argv);
    if (qpath) dh_stdin_once("--query", qpath, in);
    if (dbpath) dh_stdin_once("--db", dbpath, in);
    if (qpath && dbpath && !strcmp(qpath, "-") && !strcmp(dbpath, "-"))
        dh_usage_error("--query - and --db -: standard input can be read once");
    if (fm == F_AUTO) fm = format_from_name(out);
    if (fm == F_AUTO) fm = F_PNG;
    if (out && !strcmp(out, "-")) out = NULL;

    /* what the input is decides the rest */
    dh_err e;
    dhs_reader *r = dhs_open_path(in, NULL, &e);
    if (!r) dh_die_err(&e, NULL);
    const dhs_schema *isc = dhs_reader_schema(r);
    int images = strcmp(isc->kind, "rankings") && dhs_field_index(isc, "pixels") >= 0;
    if (!images && strcmp(isc->kind, "rankings"))
        dh_die(DH_EXIT_FAIL, "%s: a %s stream: dh-show reads rankings (dh-rank) or images", dhs_reader_name(r),
               isc->kind);
    static dh_outfile of;
    if (images) {
        if (fm == F_TSV || fm == F_JSONL)
            dh_usage_error("--format %s is for rankings; an images stream is shown as png, html or files",
                           fm == F_TSV ? "tsv" : "jsonl");
        if (qpath || dbpath) dh_usage_error("--query and --db are for rankings; the input is an images stream");
        if (fm == F_FILES) {
            if (!out) dh_usage_error("--format files: name the folder with -o DIR");
            show_images(NULL, fm, r, out, limit == -2 ? -1 : limit, scale, columns);
            return DH_EXIT_OK;
        }
        if (!out && isatty(STDOUT_FILENO))
            dh_usage_error("will not write a picture to a terminal: give -o FILE or redirect");
        if (dh_out_open_guarded(&of, out, &e)) dh_die_err(&e, NULL);
        show_images(of.f, fm, r, NULL, limit == -2 ? 100 : limit, scale, columns);
        if (dh_out_commit(&of, &e)) dh_die_err(&e, NULL);
        return DH_EXIT_OK;
    }
    if (fm == F_FILES) dh_usage_error("--format files is for an images stream; the input is rankings");
    rk k;
    rk_open(&k, r);
    if (fm == F_TSV || fm == F_JSONL) {
        if (qpath) dh_usage_error("--query is for pictures (png, html); text takes the query ids from the rankings");
        const char *dbp = dbpath ? dbpath : k.db;
        if (!dbp)
            dh_usage_error("the rankings do not name their database: give --db FILE (the codes or images ranked)");
        struct stat st;
        if (!dbpath && stat(dbp, &st) != 0)
            dh_die(DH_EXIT_IO, "%s (the rankings' database): %s; give --db FILE", dbp, strerror(errno));
        rowset db;
        rowset_load(&db, dbp, "--db", NULL, 0, 0);
        if (k.db_rows >= 0 && db.total != k.db_rows)
            dh_die(DH_EXIT_FAIL, "%s: %lld rows, but the rankings were made against a database of %lld", db.name,
                   (long long)db.total, (long long)k.db_rows);
        if (dh_out_open_guarded(&of, out, &e)) dh_die_err(&e, NULL);
        write_text(of.f, fm, &k, limit == -2 ? -1 : limit, top == -2 ? -1 : top, &db);
        rowset_free(&db);
    } else {
        if (!dbpath)
            dh_usage_error("a picture needs the database images: give --db IMAGES (the images stream the database "
                           "codes were encoded from)");
        if (!qpath) dh_usage_error("a picture needs the query images: give --query IMAGES");
        if (!out && isatty(STDOUT_FILENO))
            dh_usage_error("will not write a picture to a terminal: give -o FILE or redirect");
        if (dh_out_open_guarded(&of, out, &e)) dh_die_err(&e, NULL);
        show_rankings(of.f, fm, &k, limit == -2 ? 20 : limit, top == -2 ? 10 : top, scale, qpath, dbpath);
    }
    dhs_close(k.r);
    if (dh_out_commit(&of, &e)) dh_die_err(&e, NULL);
    return DH_EXIT_OK;
}
