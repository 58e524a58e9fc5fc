# pipelines/experiment.mk — the deephash experiment as make rules, shared by
# pipelines/<dataset>/Makefile. Every intermediate stream is a file in
# $(W); make re-runs a stage only when its inputs are newer, so a second run
# with another BITS re-runs only what depends on BITS.
#
# Variables (set by the dataset Makefile or on the command line):
#   SOURCE     dataset source for dh-ingest          ARCH   network (lenet, cifar, fast, air)
#   NET        a network file for stage 1 instead of ARCH's net, trained with ARCH's recipe
#              (dh-pretrain --net NET --recipe ARCH)
#   W          work directory                         BITS   code lengths (default 12 24 48)
#   METHODS    shallow baselines for Table 2         DEVICE cpu, cuda or auto
#   PRETRAIN / FEATS / INIT / FINETUNE / RANDOM: extra options per stage
#   QUERIES    queries per class taken from the test split (0 = the whole test split)
#
# Protocol (the paper's): database = training split, queries = test split,
# relevant = same label, mAP over the whole Hamming ranking, ties by
# database order (dh-map also reports the tie-aware mAP).

SHELL   := /bin/bash
.SHELLFLAGS := -euo pipefail -c
ROOT    := $(abspath $(dir $(lastword $(MAKEFILE_LIST)))/..)
BIN     ?= $(ROOT)/build/rel/bin
export PATH := $(BIN):$(PATH)
BITS    ?= 12 24 48
METHODS ?= lsh pcah itq sh ldah ksh sdh
DEVICE  ?= auto
QUERIES ?= 0
SEED    ?= 1
# Test-time augmentation of the images' features and codes (dh-feats(1)
# --tta): none, flip or full. Give each setting its own W: cached features
# are not remade when it changes.
TTA     ?=
TTA_OPT  = $(if $(TTA),--tta=$(TTA))
export DH_DEVICE := $(DEVICE)
# Wall time of a stage, in seconds, into $@.time (pipelines/timed: bash's
# clock, as a minimal Debian has no /usr/bin/time). A prefix: $(TIME) CMD...
TIME    = $(ROOT)/pipelines/timed $@.time

.DELETE_ON_ERROR:
.SECONDARY:
.PHONY: all table2 table3 results clean

all: table2 table3 results

# ---- stage 0: data ----------------------------------------------------------
$(W)/train.dhs: | $(W)/.dir
	$(TIME) dh-ingest --split train $(INGEST) -o $@ $(SOURCE)
$(W)/test.dhs: | $(W)/.dir
	$(TIME) dh-ingest --split test $(INGEST) -o $@ $(SOURCE)
ifeq ($(QUERIES),0)
$(W)/query.dhs: $(W)/test.dhs
	ln -sf test.dhs $@
else
$(W)/query.dhs: $(W)/test.dhs
	dh-split --per-class $(QUERIES) --seed $(SEED) -o $@ $<
endif
$(W)/.dir:
	mkdir -p $(W)/codes $(W)/results && touch $@

# ---- stage 1: pre-training, features ----------------------------------------
NET     ?=
NET_OPT  = $(if $(NET),--net $(abspath $(NET)) --recipe $(ARCH),--arch $(ARCH))
$(W)/net.dhm: $(W)/train.dhs $(W)/test.dhs $(NET)
	$(TIME) dh-pretrain $(NET_OPT) --seed $(SEED) --val $(W)/test.dhs $(PRETRAIN) -o $@ $< 2> >(tee $@.log >&2)
# (a static pattern: the feature files are explicit targets, so that make
# prefers the shallow-model encode rules below for hash-*.dhm models)
$(W)/feats-train.dhs $(W)/feats-query.dhs: $(W)/feats-%.dhs: $(W)/%.dhs $(W)/net.dhm
	$(TIME) dh-feats $(TTA_OPT) -m $(W)/net.dhm -o $@ $<

# ---- stage 2: hash layer (paper) and shallow baselines -------------------------
$(W)/hash-deephash-%.dhm: $(W)/feats-train.dhs
	$(TIME) dh-inithash --method deephash --bits $* --seed $(SEED) $(INIT) -o $@ $<
$(W)/hash-%.dhm: $(W)/feats-train.dhs
	$(TIME) dh-inithash --method $(word 1,$(subst -, ,$*)) --bits $(word 2,$(subst -, ,$*)) --seed $(SEED) -o $@ $<

# ---- stage 3: fine-tuning (full method) and random init -------------------------
$(W)/finetune-%.dhm: $(W)/train.dhs $(W)/net.dhm $(W)/hash-deephash-%.dhm
	$(TIME) dh-finetune -m $(W)/net.dhm --hash $(W)/hash-deephash-$*.dhm --seed $(SEED) $(FINETUNE) -o $@ $< 2> >(tee $@.log >&2)
$(W)/random-%.dhm: $(W)/train.dhs
	$(TIME) dh-finetune --arch $(ARCH) --bits $* --seed $(SEED) $(RANDOM) -o $@ $< 2> >(tee $@.log >&2)

# ---- encode and evaluate ----------------------------------------------------------
# codes/<model>-<split>.codes: a shallow/stage-2 model encodes features, a deep one images
$(W)/codes/hash-%-db.codes: $(W)/hash-%.dhm $(W)/feats-train.dhs
	dh-encode -m $< -o $@ $(W)/feats-train.dhs
$(W)/codes/hash-%-query.codes: $(W)/hash-%.dhm $(W)/feats-query.dhs
	dh-encode -m $< -o $@ $(W)/feats-query.dhs
$(W)/codes/%-db.codes: $(W)/%.dhm $(W)/train.dhs
	dh-encode $(TTA_OPT) -m $< -o $@ $(W)/train.dhs
$(W)/codes/%-query.codes: $(W)/%.dhm $(W)/query.dhs
	dh-encode $(TTA_OPT) -m $< -o $@ $(W)/query.dhs
$(W)/results/%.json: $(W)/codes/%-query.codes $(W)/codes/%-db.codes
	$(TIME) dh-map --json --title $* --query $< --db $(W)/codes/$*-db.codes > $@

# Table 2: DeepHash (fine-tuned) beside the shallow methods on the same features
table2: $(foreach b,$(BITS),$(W)/results/finetune-$(b).json $(foreach m,$(METHODS),$(W)/results/hash-$(m)-$(b).json))
# Table 3: random init., pre-training (stage 1 + 2), fine-tuning
table3: $(foreach b,$(BITS),$(W)/results/random-$(b).json $(W)/results/hash-deephash-$(b).json $(W)/results/finetune-$(b).json)

results: $(W)/results.md
$(W)/results.md: $(wildcard $(W)/results/*.json)
	$(ROOT)/pipelines/results.sh $(W) "$(PAPER)" > $@
	cat $@
	dh-plot -o $(W)/pr.png $(W)/results/*-48.json 2>/dev/null || true

clean:
	rm -rf $(W)

# ---- the demo: the full method at 48 bits, all eight stages -------------------------
.PHONY: demo
demo: $(W)/results/finetune-48.json $(W)/results/hash-deephash-48.json
	@echo "== dh-rank: top 100 of the first 1000 queries, then dh-map on those rankings"
	dh-head -n 1000 $(W)/codes/finetune-48-query.codes | dh-rank -q --db $(W)/codes/finetune-48-db.codes --top 100 \
	  | dh-map -q --db $(W)/codes/finetune-48-db.codes | sed -n '/P@k/,/^ *100 /p'
	@echo "== dh-map: all queries against the database (fast path)"
	dh-map --query $(W)/codes/finetune-48-query.codes --db $(W)/codes/finetune-48-db.codes | sed -n '1,16p'
	$(ROOT)/pipelines/results.sh $(W) | tee $(W)/results.md
	dh-plot -o $(W)/pr-48.png $(W)/results/finetune-48.json $(W)/results/hash-deephash-48.json
	dh-head -n 6 $(W)/codes/finetune-48-query.codes | dh-rank -q --db $(W)/codes/finetune-48-db.codes --top 8 \
	  | dh-show -q --query $(W)/query.dhs --db $(W)/train.dhs -o $(W)/top8.png
	@echo "== dh-show: what the first 6 queries retrieve (top 8; green: same class, red: another): $(W)/top8.png"
	@echo "== precision-recall plot: $(W)/pr-48.png; stage times (s):"
	@for f in $(W)/*.time; do printf '  %-28s %s\n' "$$(basename $$f .time)" "$$(cat $$f)"; done

# ---- the deep hashing losses side by side (issue 16): make deep-methods ----------------
# Every loss of dh-finetune --loss (dh-deep-methods(7)) trained from the same
# features and the same stage-2 start (dh-inithash --method deephash on the
# comparison's training rows), by the same trainer, at every bit length; the
# first seed for all, DEEP_SEEDS for the DEEP_TOP best (mean tie-aware mAP
# over the bit lengths at the first seed). One table, $(DW)/deep-methods.md
# (pipelines/deep-table.sh). A run that fails is left out of the table and
# named under it; the target then fails.
#   DEEP_METHODS   the rows: deephash (the default loss, --loss balanced), paper (--loss paper),
#                  or a registry name; DEEP_LOSS_<name> overrides its --loss spec; stage2 is the
#                  common start itself (no fine-tuning; a reference row, never among the top)
#   DEEP_BITS      code lengths (default: BITS when given on the command line, else 12 16 24 32 48 64)
#   DEEP_SEEDS     seeds for the top methods (default 1 2 3); DEEP_TOP how many (default 5)
#   DEEP_MODE      features (default: the hash layer on the cached z of net.dhm, frozen; CPU) or
#                  joint (network and hash layer trained on the images, from net.dhm)
#   DEEP_SUBSET    N: train on N rows per class of the training split (dh-split --per-class,
#                  seeded); the database is then those rows. Empty: the whole split.
#   DEEP_FINETUNE  options for every dh-finetune run (e.g. --epochs 4; joint runs go without the
#                  classification term, dh-finetune's default for deephash alone, unless it says
#                  --aux-xent W: then every loss has it)
#   DEEP_FEATS_TRAIN / DEEP_FEATS_QUERY  the features (default: this pipeline's)
DEEP_METHODS ?= stage2 deephash paper dpsh dhn hashnet dch dsh dtsh mihash csq orthohash dsdh greedyhash adsh
DEEP_BITS    ?= $(if $(filter command line,$(origin BITS)),$(BITS),12 16 24 32 48 64)
DEEP_SEEDS   ?= 1 2 3
DEEP_TOP     ?= 5
DEEP_MODE    ?= features
DEEP_SUBSET  ?=
DEEP_FINETUNE ?=
DEEP_FEATS_TRAIN ?= $(W)/feats-train.dhs
DEEP_FEATS_QUERY ?= $(W)/feats-query.dhs
DW           := $(W)/deep-$(DEEP_MODE)$(if $(DEEP_SUBSET),-sub$(DEEP_SUBSET))
DEEP_SEED1   := $(firstword $(DEEP_SEEDS))
DEEP_JOINT   := $(filter joint,$(DEEP_MODE))
# the training rows (features; images for joint training): also the database
ifeq ($(DEEP_SUBSET),)
DEEP_TRAIN_F := $(DEEP_FEATS_TRAIN)
DEEP_TRAIN_I := $(W)/train.dhs
else
DEEP_TRAIN_F := $(DW)/train-feats.dhs
DEEP_TRAIN_I := $(DW)/train-images.dhs
$(DW)/train-feats.dhs: $(DEEP_FEATS_TRAIN) | $(DW)/.dir
	dh-split --per-class $(DEEP_SUBSET) --seed $(SEED) -o $@ $<
$(DW)/train-images.dhs: $(W)/train.dhs | $(DW)/.dir
	dh-split --per-class $(DEEP_SUBSET) --seed $(SEED) -o $@ $<
endif
DEEP_DB      := $(if $(DEEP_JOINT),$(DEEP_TRAIN_I),$(DEEP_TRAIN_F))
DEEP_Q       := $(if $(DEEP_JOINT),$(W)/query.dhs,$(DEEP_FEATS_QUERY))
# in a model's recipe ($* = METHOD-BITS-sSEED): its method, seed and --loss
deep_m        = $(word 1,$(subst -, ,$*))
deep_seed     = $(patsubst s%,%,$(word 3,$(subst -, ,$*)))
deep_loss     = $(or $(DEEP_LOSS_$(deep_m)),$(if $(filter deephash,$(deep_m)),balanced,$(deep_m)))
$(DW)/.dir:
	mkdir -p $(DW) && touch $@
$(DW)/hash0-%.dhm: $(DEEP_TRAIN_F) | $(DW)/.dir
	$(TIME) dh-inithash -q --method deephash --bits $* --seed $(SEED) $(INIT) -o $@ $<
# a model, $(DW)/METHOD-BITS-sSEED.dhm (ADSH also writes the database codes it learned)
.SECONDEXPANSION:
$(DW)/%.dhm: $$(DW)/hash0-$$(word 2,$$(subst -, ,$$*)).dhm $(DEEP_DB) $(if $(DEEP_JOINT),$(W)/net.dhm)
	$(TIME) dh-finetune -q --loss $(deep_loss) --seed $(deep_seed) --hash $< $(if $(DEEP_JOINT),--aux-xent 0) \
	  $(DEEP_FINETUNE) $(if $(DEEP_JOINT),-m $(W)/net.dhm,--features) $(if $(filter adsh,$(deep_m)),--db-codes $(DW)/$*-db.codes) \
	  -o $@ $(DEEP_DB)
$(DW)/stage2-%.dhm: $$(DW)/hash0-$$(word 1,$$(subst -, ,$$*)).dhm
	cp $< $@ && cp $<.time $@.time
$(DW)/adsh-%-db.codes: $(DW)/adsh-%.dhm
	test -s $@ && touch $@
$(DW)/%-db.codes: $(DW)/%.dhm
	dh-encode -q -m $< -o $@ $(DEEP_DB)
$(DW)/%-query.codes: $(DW)/%.dhm $(DEEP_Q)
	dh-encode -q -m $< -o $@ $(DEEP_Q)
$(DW)/%.json: $(DW)/%-query.codes $(DW)/%-db.codes
	dh-map -q --json --title $* --query $< --db $(DW)/$*-db.codes > $@
deep_runs = $(foreach m,$(1),$(foreach b,$(DEEP_BITS),$(foreach s,$(2),$(DW)/$(m)-$(b)-s$(s).json)))
DEEP_TABLE = $(ROOT)/pipelines/deep-table.sh --methods "$(DEEP_METHODS)" --bits "$(DEEP_BITS)" --seeds "$(DEEP_SEEDS)"

.PHONY: deep-methods deep-first deep-seeds deep-table
deep-methods:
	-$(MAKE) -k -f $(firstword $(MAKEFILE_LIST)) deep-first
	-$(MAKE) -k -f $(firstword $(MAKEFILE_LIST)) deep-seeds DEEP_BEST="$$($(DEEP_TABLE) --top $(DEEP_TOP) $(DW))"
	$(MAKE) -f $(firstword $(MAKEFILE_LIST)) deep-table
deep-first: $(call deep_runs,$(DEEP_METHODS),$(DEEP_SEED1))
deep-seeds: $(call deep_runs,$(DEEP_BEST),$(DEEP_SEEDS))
deep-table:
	rc=0; $(DEEP_TABLE) --top $(DEEP_TOP) --table $(DW) > $(DW)/deep-methods.md || rc=$$?; \
	  cat $(DW)/deep-methods.md; exit $$rc

# ---- does stage 3 earn its place (issue 15): make stage3-ablation ------------------------------------
# Stage 2 alone (the hash layer of dh-inithash on the z of net.dhm), stage 3 on
# the hash layer alone (dh-finetune --features: the cached z, a frozen
# backbone) and joint stage 3 (dh-finetune -m: network and hash layer on the
# images), all from the same net.dhm and, for each seed S, the same stage-2
# layer (dh-inithash --seed S; dh-finetune --seed S), at every bit length;
# every mode at every seed; one table, $(AW)/stage3-ablation.md
# (pipelines/deep-table.sh --all-seeds: tie-aware mAP, mAP@1000, P@r<=2 and
# training time as mean +- sd over the seeds, and each stage-3 mode's gain
# over stage 2 paired by seed). Stage-3 runs write a checkpoint
# ($@.ckpt, after every epoch and at SIGINT/SIGTERM) and resume from it
# when make runs again after an interruption (the time file then counts the
# resumed part only); the checkpoint is removed once the model is written.
# A failed run is named under the table and the target fails.
#   ABL_BITS      code lengths (default: BITS when given on the command line, else 12 24 48)
#   ABL_SEEDS     hashing seeds (default 1 2 3; stage 1 is net.dhm, trained once with SEED)
#   ABL_FINETUNE  options for both stage-3 modes (e.g. --epochs 20); ABL_FEATURES, ABL_JOINT for one
#                 (joint is dh-finetune's default, with its classification term: ABL_JOINT=--aux-xent=0
#                 for the loss alone)
#   make -C pipelines/cifar10 stage3-ablation ARCH=fast DEVICE=cuda
ABL_BITS     ?= $(if $(filter command line,$(origin BITS)),$(BITS),12 24 48)
ABL_SEEDS    ?= 1 2 3
ABL_MODES    := stage2 features joint
ABL_FINETUNE ?=
ABL_FEATURES ?=
ABL_JOINT    ?=
AW           := $(W)/stage3-ablation
# in a recipe for $(AW)/MODE-BITS-sSEED.dhm ($* = BITS-sSEED): the bits, the seed, the checkpoint options
abl_bits      = $(word 1,$(subst -, ,$*))
abl_seed      = $(patsubst s%,%,$(word 2,$(subst -, ,$*)))
abl_ckpt      = $(if $(wildcard $@.ckpt),--resume $@.ckpt,--checkpoint $@.ckpt)
$(AW)/.dir:
	mkdir -p $(AW) && touch $@
$(AW)/hash0-%.dhm: $(W)/feats-train.dhs | $(AW)/.dir
	$(TIME) dh-inithash -q --method deephash --bits $(abl_bits) --seed $(abl_seed) $(INIT) -o $@ $<
$(AW)/stage2-%.dhm: $(AW)/hash0-%.dhm
	cp $< $@ && cp $<.time $@.time
$(AW)/features-%.dhm: $(AW)/hash0-%.dhm $(W)/feats-train.dhs
	$(TIME) dh-finetune -q --features --hash $< --seed $(abl_seed) $(ABL_FINETUNE) $(ABL_FEATURES) $(abl_ckpt) \
	  -o $@ $(W)/feats-train.dhs
	rm -f $@.ckpt
$(AW)/joint-%.dhm: $(AW)/hash0-%.dhm $(W)/net.dhm $(W)/train.dhs
	$(TIME) dh-finetune -q -m $(W)/net.dhm --hash $< --seed $(abl_seed) $(ABL_FINETUNE) $(ABL_JOINT) $(abl_ckpt) \
	  -o $@ $(W)/train.dhs
	rm -f $@.ckpt
# codes: the joint models encode images, the others the features of net.dhm
$(AW)/%-db.codes: $(AW)/%.dhm $(W)/train.dhs $(W)/feats-train.dhs
	dh-encode -q $(if $(filter joint-%,$*),$(TTA_OPT)) -m $< -o $@ $(if $(filter joint-%,$*),$(W)/train.dhs,$(W)/feats-train.dhs)
$(AW)/%-query.codes: $(AW)/%.dhm $(W)/query.dhs $(W)/feats-query.dhs
	dh-encode -q $(if $(filter joint-%,$*),$(TTA_OPT)) -m $< -o $@ $(if $(filter joint-%,$*),$(W)/query.dhs,$(W)/feats-query.dhs)
$(AW)/%.json: $(AW)/%-query.codes $(AW)/%-db.codes
	dh-map -q --json --title $* --query $< --db $(AW)/$*-db.codes > $@
ABL_TABLE = $(ROOT)/pipelines/deep-table.sh --all-seeds --methods "$(ABL_MODES)" --bits "$(ABL_BITS)" \
  --seeds "$(ABL_SEEDS)" --title "Does stage 3 earn its place: stage 2 alone, stage 3 on the hash layer (--features), joint stage 3"

.PHONY: stage3-ablation stage3-ablation-runs stage3-ablation-table
stage3-ablation:
	-$(MAKE) -k -f $(firstword $(MAKEFILE_LIST)) stage3-ablation-runs
	$(MAKE) -f $(firstword $(MAKEFILE_LIST)) stage3-ablation-table
stage3-ablation-runs: $(foreach m,$(ABL_MODES),$(foreach b,$(ABL_BITS),$(foreach s,$(ABL_SEEDS),$(AW)/$(m)-$(b)-s$(s).json)))
stage3-ablation-table: | $(AW)/.dir
	rc=0; $(ABL_TABLE) --table $(AW) > $(AW)/stage3-ablation.md || rc=$$?; cat $(AW)/stage3-ablation.md; exit $$rc
