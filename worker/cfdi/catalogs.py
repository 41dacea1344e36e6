"""Descriptions of the SAT catalog codes printed on the PDF (the common ones only).

The code is the fact; the description is a reading aid. An unknown code prints alone.
"""

from __future__ import annotations

REGIMEN_FISCAL = {
    "601": "General de Ley Personas Morales",
    "603": "Personas Morales con Fines no Lucrativos",
    "605": "Sueldos y Salarios e Ingresos Asimilados a Salarios",
    "606": "Arrendamiento",
    "607": "Régimen de Enajenación o Adquisición de Bienes",
    "608": "Demás ingresos",
    "610": "Residentes en el Extranjero sin Establecimiento Permanente en México",
    "611": "Ingresos por Dividendos (socios y accionistas)",
    "612": "Personas Físicas con Actividades Empresariales y Profesionales",
    "614": "Ingresos por intereses",
    "615": "Régimen de los ingresos por obtención de premios",
    "616": "Sin obligaciones fiscales",
    "620": "Sociedades Cooperativas de Producción que optan por diferir sus ingresos",
    "621": "Incorporación Fiscal",
    "622": "Actividades Agrícolas, Ganaderas, Silvícolas y Pesqueras",
    "623": "Opcional para Grupos de Sociedades",
    "624": "Coordinados",
    "625": "Actividades Empresariales con ingresos a través de Plataformas Tecnológicas",
    "626": "Régimen Simplificado de Confianza",
}

USO_CFDI = {
    "G01": "Adquisición de mercancías",
    "G02": "Devoluciones, descuentos o bonificaciones",
    "G03": "Gastos en general",
    "I01": "Construcciones",
    "I02": "Mobiliario y equipo de oficina por inversiones",
    "I03": "Equipo de transporte",
    "I04": "Equipo de cómputo y accesorios",
    "I05": "Dados, troqueles, moldes, matrices y herramental",
    "I06": "Comunicaciones telefónicas",
    "I07": "Comunicaciones satelitales",
    "I08": "Otra maquinaria y equipo",
    "D01": "Honorarios médicos, dentales y gastos hospitalarios",
    "D02": "Gastos médicos por incapacidad o discapacidad",
    "D03": "Gastos funerales",
    "D04": "Donativos",
    "D05": "Intereses reales efectivamente pagados por créditos hipotecarios (casa habitación)",
    "D06": "Aportaciones voluntarias al SAR",
    "D07": "Primas por seguros de gastos médicos",
    "D08": "Gastos de transportación escolar obligatoria",
    "D09": "Depósitos en cuentas para el ahorro, primas que tengan como base planes de pensiones",
    "D10": "Pagos por servicios educativos (colegiaturas)",
    "S01": "Sin efectos fiscales",
    "CP01": "Pagos",
    "CN01": "Nómina",
}

FORMA_PAGO = {
    "01": "Efectivo",
    "02": "Cheque nominativo",
    "03": "Transferencia electrónica de fondos",
    "04": "Tarjeta de crédito",
    "05": "Monedero electrónico",
    "06": "Dinero electrónico",
    "08": "Vales de despensa",
    "12": "Dación en pago",
    "13": "Pago por subrogación",
    "14": "Pago por consignación",
    "15": "Condonación",
    "17": "Compensación",
    "23": "Novación",
    "24": "Confusión",
    "25": "Remisión de deuda",
    "26": "Prescripción o caducidad",
    "27": "A satisfacción del acreedor",
    "28": "Tarjeta de débito",
    "29": "Tarjeta de servicios",
    "30": "Aplicación de anticipos",
    "31": "Intermediario pagos",
    "99": "Por definir",
}

METODO_PAGO = {"PUE": "Pago en una sola exhibición", "PPD": "Pago en parcialidades o diferido"}

TIPO_COMPROBANTE = {"I": "Ingreso", "E": "Egreso", "T": "Traslado", "N": "Nómina", "P": "Pago"}

TITULO = {
    "I": "FACTURA",
    "E": "NOTA DE CRÉDITO",
    "T": "CARTA PORTE / TRASLADO",
    "N": "RECIBO DE NÓMINA",
    "P": "RECIBO ELECTRÓNICO DE PAGO",
}

EXPORTACION = {
    "01": "No aplica",
    "02": "Definitiva con clave A1",
    "03": "Temporal",
    "04": "Definitiva con clave distinta a A1",
}

OBJETO_IMP = {
    "01": "No objeto de impuesto",
    "02": "Sí objeto de impuesto",
    "03": "Sí objeto del impuesto y no obligado al desglose",
    "04": "Sí objeto del impuesto y no causa impuesto",
    "05": "Sí objeto del impuesto, IVA crédito PODEBI",
}

IMPUESTO = {"001": "ISR", "002": "IVA", "003": "IEPS"}

TIPO_RELACION = {
    "01": "Nota de crédito de los documentos relacionados",
    "02": "Nota de débito de los documentos relacionados",
    "03": "Devolución de mercancía sobre facturas o traslados previos",
    "04": "Sustitución de los CFDI previos",
    "05": "Traslados de mercancías facturados previamente",
    "06": "Factura generada por los traslados previos",
    "07": "CFDI por aplicación de anticipo",
}

PERIODICIDAD = {"01": "Diario", "02": "Semanal", "03": "Quincenal", "04": "Mensual", "05": "Bimestral"}


def describe(catalog: dict[str, str], code: str | None) -> str:
    """``"601 - General de Ley Personas Morales"``, or the bare code when unknown."""
    if not code:
        return ""
    text = catalog.get(code)
    return f"{code} - {text}" if text else code


# --- receptor rules (SAT's c_RegimenFiscal and c_UsoCFDI applicability columns) ----------
# Which person types may hold each RegimenFiscal: "F" física (13-character RFC), "M" moral
# (12 characters). A code absent here is not in c_RegimenFiscal (CFDI40157).
REGIMEN_PERSONA: dict[str, str] = {
    "601": "M", "603": "M", "605": "F", "606": "F", "607": "F", "608": "F", "610": "FM",
    "611": "F", "612": "F", "614": "F", "615": "F", "616": "F", "620": "M", "621": "F",
    "622": "M", "623": "M", "624": "M", "625": "F", "626": "FM", "628": "M", "629": "F",
    "630": "F",
}
_BUSINESS = frozenset({"601", "603", "606", "612", "620", "621", "622", "623", "624", "625", "626"})
_PERSONAL = frozenset({"605", "606", "607", "608", "611", "612", "614", "615", "625"})
_ANY = _BUSINESS | _PERSONAL | {"610", "616"}
# UsoCFDI -> (person types, RegimenFiscalReceptor values it may go with). A code absent
# here is not in c_UsoCFDI (CFDI40160).
USO_CFDI_RULES: dict[str, tuple[str, frozenset[str]]] = {
    **{code: ("FM", _BUSINESS) for code in ("G01", "G02", "G03", "I01", "I02", "I03", "I04",
                                            "I05", "I06", "I07", "I08")},
    **{f"D{n:02d}": ("F", _PERSONAL) for n in range(1, 11)},
    "S01": ("FM", _ANY),
    "CP01": ("FM", _ANY),
    "CN01": ("F", frozenset({"605"})),
}
# The generic RFCs (público en general, extranjero) take only this regime (CFDI40159).
GENERIC_RFCS = frozenset({"XAXX010101000", "XEXX010101000"})
GENERIC_REGIMEN = "616"
