/* AugMix chains on uint8 images on the CPU: each image and chain runs its ops one after another, with
 * PIL's semantics (Pillow's libImaging/Geometry.c for the affine warp, ImageOps for the tone ops).
 *
 * Built on first use by augmax_lib/ops/native.py and called through ctypes; the op parameters (affine
 * coefficients, posterize masks, solarize thresholds) are computed by the PyTorch code, so this file does
 * pixel work only. Compiled with -ffp-contract=off: the warp's double arithmetic must be evaluated as
 * written, as Pillow's is, without fused multiply-adds.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { KIND_NONE = -1, KIND_WARP = 0, KIND_AUTOCONTRAST = 1, KIND_EQUALIZE = 2, KIND_POSTERIZE = 3,
       KIND_SOLARIZE = 4 };

static inline int64_t clip(int64_t v, int64_t size) { return v < 0 ? 0 : (v < size ? v : size - 1); }

/* floor(v) as an integer, for |v| well inside int64: truncation, corrected below zero (Pillow's FLOOR).
 * Baseline x86-64 has no rounding instruction, and a call to floor() per pixel doubles the warp's cost. */
static inline int64_t floor_int(double v) {
    const int64_t t = (int64_t)v;
    return (double)t > v ? t - 1 : t;
}

/* A translation by whole pixels (all AugMix draws): output (x, y) reads input (x + tx, y + ty), black
 * where that is outside. Bilinear sampling lands on pixel centres there, so this equals the warp exactly. */
static void shift(const uint8_t *src, uint8_t *dst, int64_t tx, int64_t ty, int64_t c, int64_t h, int64_t w) {
    const int64_t plane = h * w;
    const int64_t x_from = tx < 0 ? -tx : 0, x_to = tx > 0 ? w - tx : w;  /* outputs that read inside */
    for (int64_t k = 0; k < c; k++) {
        for (int64_t y = 0; y < h; y++) {
            uint8_t *row = dst + k * plane + y * w;
            const int64_t from_y = y + ty;
            if (from_y < 0 || from_y >= h || x_from >= x_to) {
                memset(row, 0, (size_t)w);
                continue;
            }
            memset(row, 0, (size_t)x_from);
            memcpy(row + x_from, src + k * plane + from_y * w + x_from + tx, (size_t)(x_to - x_from));
            memset(row + x_to, 0, (size_t)(w - x_to));
        }
    }
}

/* Image.transform(size, AFFINE, a, BILINEAR): output pixel (x, y) reads the input at
 * (a0 x' + a1 y' + a2, a3 x' + a4 y' + a5) with (x', y') its centre; black outside [0, W) x [0, H), the
 * four neighbours clamped to the border inside; the blend truncated to uint8. Where a coordinate is the
 * pixel centre itself (shears, translations), its blend weight is exactly 0 and its second row or column
 * is skipped: Pillow's v1 + (v2 - v1) * 0 is v1. */
static void warp(const uint8_t *src, uint8_t *dst, const double *a, int64_t c, int64_t h, int64_t w) {
    const int64_t plane = h * w;
    const double width = (double)w, height = (double)h;
    if (a[0] == 1.0 && a[1] == 0.0 && a[3] == 0.0 && a[4] == 1.0 && a[2] == floor(a[2]) && a[5] == floor(a[5])
        && fabs(a[2]) < width + 1 && fabs(a[5]) < height + 1) {
        shift(src, dst, (int64_t)a[2], (int64_t)a[5], c, h, w);
        return;
    }
    const int rows_only = a[3] == 0.0 && a[4] == 1.0 && a[5] == 0.0;     /* v = y': shear_x */
    const int columns_only = a[0] == 1.0 && a[1] == 0.0 && a[2] == 0.0;  /* u = x': shear_y */
    for (int64_t y = 0; y < h; y++) {
        const double yc = (double)y + 0.5;
        /* The same products as Pillow's a0 x' + a1 y' + a2, summed in its order; only hoisted. */
        const double uy = a[1] * yc, vy = a[4] * yc;
        for (int64_t x = 0; x < w; x++) {
            const double xc = (double)x + 0.5;
            double xin = a[0] * xc + uy + a[2];
            double yin = a[3] * xc + vy + a[5];
            const int64_t at = y * w + x;
            if (!(xin >= 0.0 && xin < width && yin >= 0.0 && yin < height)) {
                for (int64_t k = 0; k < c; k++) dst[k * plane + at] = 0;
                continue;
            }
            xin -= 0.5;
            yin -= 0.5;
            const int64_t xi = floor_int(xin), yi = floor_int(yin);
            const double dx = xin - (double)xi, dy = yin - (double)yi;
            const int64_t x0 = clip(xi, w), x1 = clip(xi + 1, w);
            const int64_t top = clip(yi, h) * w;
            if (rows_only) {  /* yin - 0.5 = y: dy = 0 */
                for (int64_t k = 0; k < c; k++) {
                    const uint8_t *p = src + k * plane + top;
                    dst[k * plane + at] = (uint8_t)(p[x0] + (p[x1] - p[x0]) * dx);
                }
                continue;
            }
            /* Pillow blends the next row only when it lies inside; else v2 = v1, the same as clamping it. */
            const int64_t bottom = (yi + 1 < h ? yi + 1 : yi < 0 ? 0 : h - 1) * w;
            if (columns_only) {  /* xin - 0.5 = x: dx = 0 */
                for (int64_t k = 0; k < c; k++) {
                    const uint8_t *p = src + k * plane + x0;
                    const double v1 = p[top];
                    dst[k * plane + at] = (uint8_t)(v1 + (p[bottom] - v1) * dy);
                }
                continue;
            }
            for (int64_t k = 0; k < c; k++) {
                const uint8_t *p = src + k * plane;
                const double v1 = p[top + x0] + (p[top + x1] - p[top + x0]) * dx;
                const double v2 = p[bottom + x0] + (p[bottom + x1] - p[bottom + x0]) * dx;
                dst[k * plane + at] = (uint8_t)(v1 + (v2 - v1) * dy);
            }
        }
    }
}

static void apply_table(const uint8_t *src, uint8_t *dst, const uint8_t *table, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = table[src[i]];
}

/* ImageOps.autocontrast(cutoff=0), per channel: lut[i] = int(i * scale + offset) clipped to 0..255,
 * scale = 255 / (hi - lo), offset = -lo * scale; the identity when the channel has one level. */
static void autocontrast(const uint8_t *src, uint8_t *dst, int64_t c, int64_t plane) {
    uint8_t table[256];
    for (int64_t k = 0; k < c; k++) {
        const uint8_t *p = src + k * plane;
        uint8_t lo = 255, hi = 0;  /* uint8 accumulators: the compiler vectorises the scan */
        for (int64_t i = 0; i < plane; i++) {
            lo = p[i] < lo ? p[i] : lo;
            hi = p[i] > hi ? p[i] : hi;
        }
        if (hi <= lo) {
            memcpy(dst + k * plane, p, (size_t)plane);
            continue;
        }
        const double scale = 255.0 / (double)(hi - lo);
        const double offset = -(double)lo * scale;
        for (int i = 0; i < 256; i++) {
            const double v = (double)i * scale + offset;
            const int64_t level = (int64_t)v;
            table[i] = (uint8_t)(level < 0 ? 0 : (level > 255 ? 255 : level));
        }
        apply_table(p, dst + k * plane, table, plane);
    }
}

/* ImageOps.equalize, per channel: step = (pixels - count of the highest level present) // 255;
 * lut[i] = (step // 2 + pixels below level i) // step, at most 255; the identity when step is 0. */
static void equalize(const uint8_t *src, uint8_t *dst, int64_t c, int64_t plane) {
    uint8_t table[256];
    int64_t hist[256];
    int32_t part[4][256];
    for (int64_t k = 0; k < c; k++) {
        const uint8_t *p = src + k * plane;
        /* Four partial histograms: consecutive equal levels would otherwise wait on each other's increment. */
        memset(part, 0, sizeof(part));
        int64_t i = 0;
        for (; i + 4 <= plane; i += 4) {
            part[0][p[i]]++;
            part[1][p[i + 1]]++;
            part[2][p[i + 2]]++;
            part[3][p[i + 3]]++;
        }
        for (; i < plane; i++) part[0][p[i]]++;
        for (int b = 0; b < 256; b++) hist[b] = (int64_t)part[0][b] + part[1][b] + part[2][b] + part[3][b];
        int top = 255;
        while (top > 0 && hist[top] == 0) top--;
        const int64_t step = (plane - hist[top]) / 255;
        if (step == 0) {
            memcpy(dst + k * plane, p, (size_t)plane);
            continue;
        }
        int64_t below = step / 2;
        for (int i = 0; i < 256; i++) {
            const int64_t level = below / step;
            table[i] = (uint8_t)(level > 255 ? 255 : level);
            below += hist[i];
        }
        apply_table(p, dst + k * plane, table, plane);
    }
}

static void posterize(const uint8_t *src, uint8_t *dst, uint8_t mask, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = src[i] & mask;
}

/* ImageOps.solarize: levels >= first (the lowest inverted level; 256: none) become 255 - level. */
static void solarize(const uint8_t *src, uint8_t *dst, int32_t first, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = src[i] >= first ? (uint8_t)(255 - src[i]) : src[i];
}

/* Every chain of every image: out[i, j] = the ops of chain i run in order on image j.
 * x (n, c, h, w); out (width, n, c, h, w); kind, param (width, n, depth); coeffs (width, n, depth, 6).
 * param is the posterize mask or the solarize threshold. Returns 0, or -1 when out of memory. */
int augmax_chains_u8(const uint8_t *x, uint8_t *out, int64_t width, int64_t n, int64_t depth, int64_t c,
                     int64_t h, int64_t w, const int8_t *kind, const double *coeffs, const int32_t *param) {
    const int64_t plane = h * w, size = c * plane;
    uint8_t *buffers = (uint8_t *)malloc((size_t)(2 * size));
    if (buffers == NULL) return -1;
    for (int64_t i = 0; i < width; i++) {
        for (int64_t j = 0; j < n; j++) {
            const int64_t entry = (i * n + j) * depth;
            uint8_t *result = out + (i * n + j) * size;
            int64_t last = -1;
            for (int64_t s = 0; s < depth; s++)
                if (kind[entry + s] != KIND_NONE) last = s;
            const uint8_t *cur = x + j * size;
            if (last < 0) {
                memcpy(result, cur, (size_t)size);
                continue;
            }
            int next = 0;
            for (int64_t s = 0; s <= last; s++) {
                const int8_t op = kind[entry + s];
                if (op == KIND_NONE) continue;
                /* Ping-pong between two buffers; the last op writes the result in place. */
                uint8_t *dst = s == last ? result : buffers + next * size;
                switch (op) {
                    case KIND_WARP: warp(cur, dst, coeffs + (entry + s) * 6, c, h, w); break;
                    case KIND_AUTOCONTRAST: autocontrast(cur, dst, c, plane); break;
                    case KIND_EQUALIZE: equalize(cur, dst, c, plane); break;
                    case KIND_POSTERIZE: posterize(cur, dst, (uint8_t)param[entry + s], size); break;
                    case KIND_SOLARIZE: solarize(cur, dst, param[entry + s], size); break;
                    default: memcpy(dst, cur, (size_t)size); break;
                }
                cur = dst;
                next ^= 1;
            }
        }
    }
    free(buffers);
    return 0;
}
