"""Figures from arrays and run directories: the only part of hacm that imports plotting libraries.

One module per kind of figure, imported by name (`from hacm.viz.curves import loss_lr_figure`), so
`import hacm.viz` alone pulls in no plotting library, torch or ipywidgets:
  curves      clip lengths, loss and learning rate, accuracy per epoch, reconstruction, runs overlaid
              (matplotlib)
  evaluation  confusion matrices, confused pairs, per-class accuracy, methods compared, tau curve
  features    t-SNE maps of encoder features, side-by-side class-coloured panels (scikit-learn, matplotlib)
  tables      result tables for notebooks and markdown (sortable in HTML)
  skeleton, poincare, tokens, explorer   the interactive (plotly / ipywidgets) views
  export      saving figures (and their captions) for reports
  mpl         matplotlib figures outside pyplot that show as images in any kernel, with a caption
"""
