"""A frozen encoder's features and their k-nearest-neighbour accuracy: the linear probe's input and
pretraining's kNN monitor.

    feats = extract_features(encoder, x_uint8)
    acc = knn_accuracy(train_feats, train_y, test_feats, test_y)
"""
import torch
import torch.nn.functional as F


@torch.no_grad()
def extract_features(encoder, x, pool="cls", batch_size=256, amp=None, dtype=torch.bfloat16):
    """Features (N, dim) of uint8 images (N, C, H, W) on the encoder's device; in dtype with amp
    (default: on CUDA)."""
    encoder.eval()
    enabled = x.device.type == "cuda" if amp is None else amp
    autocast = torch.autocast(x.device.type, dtype, enabled=enabled)
    feats = []
    for i in range(0, len(x), batch_size):
        with autocast:
            feats.append(encoder.features(x[i:i + batch_size].float() / 255, pool).float())
    return torch.cat(feats)


@torch.no_grad()
def knn_accuracy(train_feats, train_y, test_feats, test_y, k=20, temperature=0.07):
    """Weighted k-nearest-neighbour accuracy on cosine similarity (the vote of InstDisc / DINO)."""
    train_feats = F.normalize(train_feats.float(), dim=1)
    test_feats = F.normalize(test_feats.float(), dim=1)
    sim, idx = (test_feats @ train_feats.T).topk(min(k, len(train_feats)), dim=1)
    votes = torch.zeros(len(test_feats), int(train_y.max()) + 1, device=test_feats.device)
    votes.scatter_add_(1, train_y[idx], (sim / temperature).exp())
    return (votes.argmax(1) == test_y).float().mean().item()
