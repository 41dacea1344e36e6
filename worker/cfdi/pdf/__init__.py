"""The printed representation (representación impresa) of a stamped CFDI 4.0:
``document`` says what it shows, ``layout`` how it is drawn (page geometry, fonts, text
flow over pages, tables, the QR), ``canvas`` writes the PDF file.

    render_pdf(stamped_xml)   # PDF bytes
"""

from worker.cfdi.pdf.document import LEGEND, render_cfdi, render_pdf

__all__ = ["LEGEND", "render_cfdi", "render_pdf"]
