/*
 * test_progress.c: the progress line without a terminal: the plain form
 * carries every known field and omits unknown ones; the terminal form fits
 * every width, keeps the step counter, drops fields in priority order and
 * draws a bar proportional to the progress.
 */
#include <math.h>
#include <string.h>

#include "base/util.h"
#include "tests/check.h"
#include "trainer/observe/progress.h"

static bt_progress full(void) {
  bt_progress p;
  bt_progress_init(&p);
  p.step = 120;
  p.total_steps = 5000;
  p.loss = 2.34567;
  p.val_loss = 2.40123;
  p.lr = 3e-4;
  p.grad_norm = 0.8123;
  p.throughput = 45210;
  p.zUnit = "tok/s";
  p.mfu = 0.4132;
  p.step_s = 0.812;
  p.data_s = 0.003;
  p.compute_s = 0.640;
  p.comm_s = 0.020;
  p.optim_s = 0.045;
  p.ckpt_s = 0.0;
  p.eta_s = 1 * 3600 + 23 * 60 + 45;
  p.elapsed_s = 62;
  return p;
}

int main(void) {
  char z[1024];
  bt_progress p = full();

  size_t n = bt_progress_format(z, sizeof z, &p, 0);
  const char *want =
      "step 120/5000 (2.4%) | loss 2.3457 | val 2.4012 | lr 3.00e-04 | "
      "gnorm 0.812 | 45.2k tok/s | MFU 41.3% | 812 ms/step (data 3.0, "
      "compute 640, comm 20, opt 45, ckpt 0.0) | elapsed 0:01:02 | "
      "ETA 1:23:45";
  CHECK(n == strlen(z) && !strcmp(z, want), "plain line:\n got  %s\n want %s", z,
        want);

  p.breakdown_pct = 1;
  bt_progress_format(z, sizeof z, &p, 0);
  CHECK(strstr(z, "812 ms/step (data 0%, compute 79%, comm 2%, opt 6%, ckpt 0%)"),
        "percent breakdown: %s", z);

  /* Unknown fields are omitted, never "nan". */
  bt_progress q;
  bt_progress_init(&q);
  q.step = 7;
  bt_progress_format(z, sizeof z, &q, 0);
  CHECK(!strcmp(z, "step 7"), "minimal: '%s'", z);
  q.loss = 1.5;
  q.throughput = 12.5;
  q.zUnit = "samples/s";
  q.total_steps = 10;
  bt_progress_format(z, sizeof z, &q, 0);
  CHECK(!strcmp(z, "step 7/10 (70.0%) | loss 1.5000 | 12.5 samples/s"),
        "CPU line without MFU: '%s'", z);
  CHECK(!strstr(z, "nan") && !strstr(z, "MFU"), "no nan, no MFU");
  /* Speech (issue 15): padding waste, validation CER and WER. */
  q.pad_frac = 0.125;
  q.val_loss = 1.25;
  q.val_cer = 0.0625;
  q.val_wer = 0.5;
  q.zUnit = "utt/s";
  bt_progress_format(z, sizeof z, &q, 0);
  CHECK(!strcmp(z, "step 7/10 (70.0%) | loss 1.5000 | val 1.2500 | CER 6.2% "
                   "WER 50.0% | pad 12.5% | 12.5 utt/s"),
        "speech line: '%s'", z);

  /* Terminal form: fits every width; counter always present. */
  for (int w = 1; w <= 240; w++) {
    n = bt_progress_format(z, sizeof z, &p, w);
    CHECK(n == strlen(z) && n <= (size_t)(w - 1), "width %d: %zu chars", w, n);
    CHECK(!strchr(z, '\n') && !strchr(z, '\r'), "no line breaks at %d", w);
    if (w >= 12) CHECK(strstr(z, "120/5000") != NULL, "counter at %d: '%s'", w, z);
  }
  /* Issue 17: 80 columns keep val loss, lr and elapsed time (and a bar). */
  n = bt_progress_format(z, sizeof z, &p, 80);
  CHECK(z[0] == '[' && strstr(z, "loss 2.3457") && strstr(z, "val 2.4012") &&
            strstr(z, "lr 3.00e-04") && strstr(z, "elapsed 0:01:02"),
        "80 columns keep bar, loss, val, lr, elapsed: '%s'", z);
  CHECK(!strstr(z, "ms/step"), "80 columns drop the breakdown first: '%s'", z);
  /* The documented drop order (progress.h), checked at every width: once a
   * part is gone, every part before it in the order is gone too. */
  {
    static const char *azOrder[] = {"ms/step", "gnorm", "MFU", "tok/s", "ETA",
                                    "%", "[", "elapsed", "lr ", "val ",
                                    "loss "};
    const int nOrder = (int)(sizeof azOrder / sizeof azOrder[0]);
    for (int w = 300; w >= 12; w--) {
      bt_progress_format(z, sizeof z, &p, w);
      int iGone = -1; /* the latest part in the order that is missing */
      for (int i = 0; i < nOrder; i++)
        if (!strstr(z, azOrder[i])) iGone = i;
      for (int i = 0; i < iGone; i++)
        CHECK(!strstr(z, azOrder[i]), "width %d keeps '%s' but dropped '%s': '%s'",
              w, azOrder[i], azOrder[iGone], z);
    }
  }
  n = bt_progress_format(z, sizeof z, &p, 300);
  CHECK(strstr(z, "ms/step") && strstr(z, "MFU") && strstr(z, "gnorm"),
        "wide terminal shows everything: '%s'", z);
  /* Bar proportional to progress: 50% of a 20-char bar is 10 '#'. */
  bt_progress h;
  bt_progress_init(&h);
  h.step = 50;
  h.total_steps = 100;
  bt_progress_format(z, sizeof z, &h, 22 + 7 + 2 + 6 + 1);
  CHECK(!strcmp(z, "[##########..........]  50.0%  50/100"), "bar: '%s'", z);
  /* Narrow: the bar goes before loss and val loss. */
  n = bt_progress_format(z, sizeof z, &p, 40);
  CHECK(!strcmp(z, "120/5000  loss 2.3457  val 2.4012"), "40 columns: '%s'", z);

  /* Small buffers: truncated, NUL-terminated, never overrun. */
  char small[8];
  memset(small, 'x', sizeof small);
  n = bt_progress_format(small, 5, &p, 0);
  CHECK(n == 4 && small[4] == 0 && small[5] == 'x', "n=5 truncation (%zu)", n);
  CHECK(bt_progress_format(small, 0, &p, 0) == 0, "n=0");

  /* ETA formatting. */
  char e[32];
  CHECK(!strcmp(bt_progress_fmt_eta(0, e, sizeof e), "0:00:00"), "eta 0");
  CHECK(!strcmp(bt_progress_fmt_eta(59.6, e, sizeof e), "0:01:00"), "eta round");
  CHECK(!strcmp(bt_progress_fmt_eta(360000 + 61, e, sizeof e), "100:01:01"),
        "eta 100h");
  CHECK(!strcmp(bt_progress_fmt_eta(NAN, e, sizeof e), "?"), "eta nan");
  CHECK(!strcmp(bt_progress_fmt_eta(-1, e, sizeof e), "?"), "eta negative");

  /* Rates. */
  q.throughput = 1.234e6;
  q.zUnit = NULL;
  bt_progress_format(z, sizeof z, &q, 0);
  CHECK(strstr(z, "1.23M tok/s") != NULL, "rate M: %s", z);
  q.throughput = 999.7;
  bt_progress_format(z, sizeof z, &q, 0);
  CHECK(strstr(z, "1.00k tok/s") != NULL, "rate rounding: %s", z);

  CHECK(bt_progress_tty_width(-1) == 0, "not a tty");
  return CHECK_DONE();
}
