"""Small helpers shared by the CFDI tests."""

from __future__ import annotations

from lxml import etree

from worker.cfdi.factory import ACuentaTerceros, Concepto, Parte


def assert_valid(schema: etree.XMLSchema, xml_bytes: bytes) -> None:
    """Fail with libxml2's messages unless the document passes SAT's XSD."""
    doc = etree.fromstring(xml_bytes)
    if not schema.validate(doc):
        raise AssertionError(f"XSD validation failed: {schema.error_log}")


# Lines that exercise every node and tax shape the factory can write.
RICH = [
    Concepto(
        descripcion="Acero  con\tespacios  ", cantidad="1.5", valor_unitario="1500.00",
        clave_prod_serv="01010101", clave_unidad="KGM", unidad="Kilo", no_identificacion="A-1",
        descuento="10.00", retenciones=(("001", "0.10"), ("002", "0.106667")),
        informacion_aduanera=("15  48  4567  6001234", "17  24  3420  7010987"),
        cuenta_predial="51888",
        a_cuenta_terceros=ACuentaTerceros("AAA010101AAA", "Tercero Ñandú", "601", "01000"),
        partes=(Parte("43211503", 2, "Tornillo", unidad="Pieza", no_identificacion="P1",
                      valor_unitario="3.50"),
                Parte("43211507", 1, "Tuerca")),
    ),
    Concepto(descripcion="Libro exento", tasa_iva="Exento", valor_unitario="250.00"),
    Concepto(descripcion="Frontera 8%", tasa_iva="0.08", cantidad=3, valor_unitario="19.99"),
    Concepto(descripcion="Tasa cero", tasa_iva="0", valor_unitario="42.00"),
    Concepto(descripcion="No objeto", objeto_imp="01", valor_unitario="5.00"),
]

FACTORY_CASES = {
    "one": dict(conceptos=1),
    "ten": dict(conceptos=10),
    "unicode": dict(conceptos=3, descripcion="Ñandú – 東京 – Ωmega", receptor_nombre="Ωmega 東京 & Cía <SA>"),
    "rich": dict(conceptos=RICH, moneda="USD", tipo_cambio="17.2345", condiciones_de_pago="30 días",
                 relacionados=["ED1752FE-E865-4FF2-BFE1-0F552E770DC9",
                               "499e9a70-36ac-448a-bbd9-f3f52102e4be"],
                 informacion_global=("04", "11", "2026"), receptor_rfc="XAXX010101000",
                 receptor_nombre="PUBLICO EN GENERAL", receptor_regimen="616", uso_cfdi="S01",
                 receptor_cp="06000"),
    "pagos": dict(pagos=True, conceptos=3),
    "pagos_rates": dict(pagos=True, conceptos=RICH[1:4]),
    "no_serie": dict(serie=None, folio=None),
}
