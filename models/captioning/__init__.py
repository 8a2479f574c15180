"""Image captioning: Show, Attend and Tell (CNN grid encoder, attention LSTM decoder) on ShapesWorld.

    from models.captioning.checkpoint import load_captioner
    from models.images import images_to_batch
    from models.captioning.decoding import beam_search
    loaded = load_captioner()                                  # models/checkpoints/captioning.safetensors
    images = images_to_batch([scene.image], loaded.model.config.image_size)
    caption = beam_search(loaded.model, images, beam_sizes=[3], max_lengths=[20])[0]
    caption.text, caption.log_prob, [w.attention for w in caption.words]   # attention: [8, 8] per word

Modules: `vocabulary` (word ids, stored in the checkpoint config), `network` (encoder, attention,
decoder, loss), `decoding` (batched greedy / beam search, settled-word callback for streaming),
`data` (taught captions, batches, resizing), `scoring` (BLEU, attribute accuracy, pointing game),
`checkpoint` (loader), `interface` (the Captioner Protocol), `builtin` and `hf_*` (the families:
models/families.py), `train`,
`evaluate`. User doc: docs/captioning.md.
"""
