"""Training: data and augmentation, the face bank, losses, the autoencoder and landmark stages, release."""
