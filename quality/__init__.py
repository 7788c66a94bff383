"""Quality assurance of generated images: metrics, feature spaces and checks."""
