"""Output modes: what an exported graph returns (models/heads.py computes them in the graph,
every runtime reads them back by name)."""

# mode -> the tensors it returns, primary first. logits and probs are float32 N x K x H x W;
# labels uint8 N x H x W (class ids < 256); score float32 N x H x W (the max probability).
OUTPUT_MODES = {
    "logits": ("logits",),
    "probs": ("probs",),
    "labels": ("labels",),
    "labels+score": ("labels", "score"),
}
PER_CLASS = ("logits", "probs")
