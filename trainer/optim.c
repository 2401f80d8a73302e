/*
 * optim.c: see optim.h.
 */
#include "base/util.h"
#include "trainer/optim.h"

#include <math.h>
#include <string.h>

int bt_optim_init(bt_optim *o, bt_backend *be, size_t lo, size_t hi) {
  memset(o, 0, sizeof *o);
  o->lo = lo;
  o->hi = hi;
  o->m = bt_mem_alloc(be, hi - lo, "AdamW first moment");
  o->v = o->m ? bt_mem_alloc(be, hi - lo, "AdamW second moment") : NULL;
  return o->v ? BT_OK : BT_ERR;
}

void bt_optim_free(bt_optim *o, bt_backend *be) {
  bt_mem_free(be, o->m);
  bt_mem_free(be, o->v);
  memset(o, 0, sizeof *o);
}

double bt_optim_lr(const bt_config *c, long step, long total) {
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

void bt_optim_step(bt_optim *o, bt_model *pModel, float *pGradLo, double lr,
                   const bt_config *c, float gradScale, long step) {
  for (int i = 0; i < pModel->nTensor; i++) {
    const bt_tensor *t = &pModel->aTensor[i];
    size_t a = t->offset > o->lo ? t->offset : o->lo;
    size_t e = t->offset + t->numel < o->hi ? t->offset + t->numel : o->hi;
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
    bt_op_adamw(pModel->be, pModel->params + a, pGradLo + (a - o->lo),
                o->m + (a - o->lo), o->v + (a - o->lo), e - a, &hp);
  }
}
