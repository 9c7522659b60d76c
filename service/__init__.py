"""The BentoML prediction service. It reads the model store; it never imports training/."""
