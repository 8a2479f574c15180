"""Image generation networks: GAN-INT-CLS text-to-image (text2image.py, text_encoder.py)
and the image-to-image translators (pix2pix, CycleGAN) behind image_to_image.py."""
