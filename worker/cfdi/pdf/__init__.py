"""The printed representation (representación impresa) of a stamped CFDI 4.0, with fpdf2.

    render_pdf(stamped_xml)   # PDF bytes
"""

from worker.cfdi.pdf.document import LEGEND, render_cfdi, render_pdf

__all__ = ["LEGEND", "render_cfdi", "render_pdf"]
