/*
 * optim.c: see optim.h.
 *
 * The schedule is a pure function of (step, end of decay), never of
 * history, so a resumed run computes the same rates as an uninterrupted
 * one. The price: raising train.steps on resume moves the end of the
 * decay, and the rate at the resumed step jumps to where the longer
 * schedule would be (up, for a run near its end). That is the documented
 * default, "stretch" (a run extended early is then the run it would have
 * been had it been configured longer); optim.decay_steps pins the end
 * instead, "keep". Either way bt_optim_log_resume says which, with both
 * rates, so the jump is never silent.
 */
#include "base/util.h"
#include "trainer/optim.h"

#include <math.h>
#include <string.h>

int bt_optim_init(bt_optim *o, bt_backend *be, size_t nMom) {
  memset(o, 0, sizeof *o);
  o->nMom = nMom;
  o->m = bt_mem_alloc(be, nMom, "AdamW first moment");
  o->v = o->m ? bt_mem_alloc(be, nMom, "AdamW second moment") : NULL;
  return o->v ? BT_OK : BT_ERR;
}

void bt_optim_free(bt_optim *o, bt_backend *be) {
  bt_mem_free(be, o->m);
  bt_mem_free(be, o->v);
  memset(o, 0, sizeof *o);
}

/* Where the decay ends: optim.decay_steps, or the run's last step. */
static long decay_end(const bt_config *c, long total) {
  return c->decay_steps > 0 ? c->decay_steps : total;
}

static const char *schedule_name(const bt_config *c) {
  switch (c->schedule) {
  case BT_LR_SCHEDULE_LINEAR: return "linear";
  case BT_LR_SCHEDULE_CONSTANT: return "constant";
  case BT_LR_SCHEDULE_COSINE: break;
  }
  return "cosine";
}

double bt_optim_lr(const bt_config *c, long step, long total) {
  total = decay_end(c, total);
  double peak = c->lr, floor_ = c->lr * c->min_lr_ratio;
  if (c->warmup_steps > 0 && step <= c->warmup_steps)
    return peak * (double)step / (double)c->warmup_steps;
  if (c->schedule == BT_LR_SCHEDULE_CONSTANT) return peak;
  long span = total - c->warmup_steps;
  double p = span > 0 ? (double)(step - c->warmup_steps) / (double)span : 1.0;
  if (p < 0) p = 0;
  if (p > 1) p = 1;
  if (c->schedule == BT_LR_SCHEDULE_LINEAR) return peak + (floor_ - peak) * p;
  return floor_ + 0.5 * (1.0 + cos(M_PI * p)) * (peak - floor_);
}

void bt_optim_step_range(bt_optim *o, bt_model *pModel, size_t lo, size_t hi,
                         size_t momOff, double lr, const bt_config *c,
                         float gradScale, long step) {
  BT_ASSERT(lo <= hi && momOff + (hi - lo) <= o->nMom);
  for (int i = 0; i < pModel->nTensor; i++) {
    const bt_tensor *t = &pModel->aTensor[i];
    size_t a = t->offset > lo ? t->offset : lo;
    size_t e = t->offset + t->numel < hi ? t->offset + t->numel : hi;
    if (e <= a) continue;
    bt_adamw_hparams hp = {
        .lr = (float)lr,
        .beta1 = (float)c->beta1,
        .beta2 = (float)c->beta2,
        .eps = (float)c->eps,
        .weight_decay = t->decay ? (float)c->weight_decay : 0.0f,
        .grad_scale = gradScale,
        .t = (int)step,
    };
    size_t k = momOff + (a - lo);
    bt_op_adamw(pModel->be, pModel->params + a, pModel->grads + a, o->m + k,
                o->v + k, e - a, &hp);
  }
}

void bt_optim_log_resume(const bt_config *pOld, const bt_config *pNew,
                         long step) {
  long oldEnd = decay_end(pOld, pOld->steps);
  long newEnd = decay_end(pNew, pNew->steps);
  if (pOld->steps == pNew->steps && oldEnd == newEnd) return;
  long next = step + 1;
  double lrOld = bt_optim_lr(pOld, next, pOld->steps);
  double lrNew = bt_optim_lr(pNew, next, pNew->steps);
  const char *zSched = schedule_name(pNew);
  if (pNew->schedule == BT_LR_SCHEDULE_CONSTANT || oldEnd == newEnd) {
    bt_log_info("resume: train.steps %d -> %d; the %s schedule keeps its "
                "course (decay ends at step %ld): learning rate %.3g at "
                "step %ld%s",
                pOld->steps, pNew->steps, zSched, newEnd, lrNew, next,
                next > newEnd ? ", the final rate after the decay's end" : "");
    return;
  }
  if (pOld->decay_steps == pNew->decay_steps) {
    bt_log_info("resume: train.steps %d -> %d stretches the %s decay to end "
                "at step %ld instead of %ld: the learning rate at step %ld "
                "is %.3g (%.3g on the old schedule); to keep the old "
                "schedule instead, set optim.decay_steps = %ld",
                pOld->steps, pNew->steps, zSched, newEnd, oldEnd, next, lrNew,
                lrOld, oldEnd);
    return;
  }
  bt_log_info("resume: optim.decay_steps %d -> %d moves the end of the %s "
              "decay to step %ld instead of %ld: the learning rate at step "
              "%ld is %.3g (%.3g on the old schedule)",
              pOld->decay_steps, pNew->decay_steps, zSched, newEnd, oldEnd,
              next, lrNew, lrOld);
}
