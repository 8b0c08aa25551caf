"""Practitioners' recipe, cell by cell, for Colab or Jupyter (``pip install transferkit`` first).

Run as a script to try it on the built-in sample: ``python recipes/notebook_quickstart.py``.
In a notebook, point ``DATA`` at your own folder (one sub-folder of images per class).
"""

from __future__ import annotations

import numpy as np

import transferkit as tk

DATA = "sample"  # or "/content/drive/MyDrive/my_photos"
OUT = "runs/quickstart"

# 1. Fine-tune an ImageNet-pretrained MobileNet: head first, then the top of the base.
config = tk.FinetuneConfig(base="mobilenet_v1_025", data=DATA, out=OUT, epochs=5, fine_tune_epochs=2, overwrite=True)
result = tk.finetune(config, verbose=1)
print(f"validation accuracy {result.val_accuracy:.3f}; run folder {result.out}")

# 2. Predict with the trained model; it takes raw 0-255 RGB, preprocessing is inside it.
bundle = tk.load_data(DATA, 224, batch_size=8, augment=False)
images, labels = next(iter(bundle.val))
probabilities = result.model.predict(images, verbose=0)
for p, y in zip(probabilities, labels.numpy()):
    print(f"true {result.class_names[y]:<6} predicted {result.class_names[int(np.argmax(p))]} ({p.max():.2f})")

# 3. The run folder's saved_model/ serves without transferkit:
#    tf.saved_model.load(f"{OUT}/saved_model").signatures["serving_default"](images)
