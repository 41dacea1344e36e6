"""Finkok's error codes as data: ``code -> (message, kind)``.

Messages are the ones Finkok (and SAT, relayed by Finkok) send; the kind is our reading of
what the code means for the pipeline (see ``errors.Kind``). Sources: the server-side
catalog excerpt and the issue write-ups summarised in Finkok's reference notes (§3), the
SAT validation matrix texts as PACs return them (§3.4).

Kinds in short: ``ok`` the request did what was asked; ``already_stamped`` 307;
``not_stamped`` 603; ``transient`` retry later, same bytes; ``account`` a person must fix
the Finkok account/credentials/CSD setup (retrying cannot help); ``fiscal_data`` the
receptor's fiscal data on the invoice does not match SAT's records; ``permanent`` the
document (or request) itself is wrong.
"""

from __future__ import annotations

OK = "ok"
ALREADY_STAMPED = "already_stamped"
NOT_STAMPED = "not_stamped"
TRANSIENT = "transient"
ACCOUNT = "account"
FISCAL_DATA = "fiscal_data"
PERMANENT = "permanent"

# code: (message, kind)
CODES: dict[str, tuple[str, str]] = {
    # --- cancellation, per-UUID SAT answers -----------------------------------------------
    "201": ("UUID Cancelado exitosamente", OK),  # "Petición de cancelación realizada exitosamente"
    "202": ("UUID Previamente cancelado", OK),  # the request was already made: idempotent
    "203": ("UUID No corresponde el RFC del emisor y de quien solicita la cancelación", PERMANENT),
    "205": ("UUID No existe", TRANSIENT),  # SAT does not know a fresh CFDI yet
    "206": ("Lista de UUIDs vacia", PERMANENT),
    "207": ("La lista enviada contiene UUIDS con formato invalido", PERMANENT),
    "208": (
        "La Fecha de Solicitud de Cancelación es mayor a la fecha de declaración",
        PERMANENT,
    ),
    # --- 300: credentials, seal, certificate ------------------------------------------------
    "300": ("El usuario o contraseña son inválidos", ACCOUNT),
    "301": ("XML mal formado", PERMANENT),
    "302": ("Sello mal formado o inválido", PERMANENT),
    "303": ("Sello no corresponde a emisor", PERMANENT),
    "304": ("Certificado revocado o caduco", ACCOUNT),  # the issuer needs a new CSD
    "305": (
        "La fecha de emisión no esta dentro de la vigencia del CSD del Emisor",
        PERMANENT,
    ),
    "306": ("EL certificado no es de tipo CSD", PERMANENT),
    "307": ("El CFDI contiene un timbre previo", ALREADY_STAMPED),
    "308": ("Certificado no expedido por el SAT", PERMANENT),
    # --- 400: issuer and date ---------------------------------------------------------------
    "401": ("Fecha y hora de generación fuera de rango", PERMANENT),
    "402": ("RFC del emisor no se encuentra en el régimen de contribuyentes", PERMANENT),
    "403": ("La fecha de emisión no es posterior al 01 de enero 2012", PERMANENT),
    "404": ("RFC del emisor no es del Sector Primario", PERMANENT),
    "405": ("RFC emisor no existe", PERMANENT),
    # --- 500: SAT reception answers relayed by Finkok (delivery of a stamped CFDI) ---------
    "501": ("Autenticación no válida", TRANSIENT),  # Finkok <-> SAT, not ours to fix
    "502": ("Comprobante no encontrado en la ruta especificada. Ruta proporcionada", TRANSIENT),
    "503": (
        "Metadatos no válidos. Hash: <Hash>, RFC Emisor: <RFC Emisor>, No.Certificado: "
        "<Numero Certificado>, UUID: <UUID, Fecha Timbrado:{Fecha Timbrado}",
        PERMANENT,
    ),
    "504": ("La estructura del comprobante recibido no es válida", PERMANENT),
    "505": ("Metadatos no correspondientes al CFDI", PERMANENT),
    "506": ("El Timbre proporcionado ya existe UUID: <UUID>", PERMANENT),
    "507": ("Comprobante recibido fue previamente cancelado", PERMANENT),
    "508": ("El Pac que envía es diferente al PAC que certificó", PERMANENT),
    "509": ("El CFDI no cuenta con los datos mínimos", PERMANENT),
    "510": ("Sello de certificación inválido", PERMANENT),
    "511": ("Sello del comprobante inválido", PERMANENT),
    "512": ("TFD no válido", PERMANENT),
    "513": ("Versión del estándar no vigente", PERMANENT),
    "514": ("Comprobante con envío extemporáneo por vigencia de versión", PERMANENT),
    # --- 600: lookups ----------------------------------------------------------------------
    "601": ("La información para buscar el comprobante no es válida.", PERMANENT),
    "602": ("Comprobante que se desea descargar no existe", PERMANENT),
    "603": ("El CFDI no contiene un timbre previo", NOT_STAMPED),
    "604": ("Hubo un error al crear el XML, contacte a soporte", ACCOUNT),
    # --- 700: account, credits, Finkok-side failures ----------------------------------------
    "701": ("The Reseller User is Suspended and can't create Invoices", ACCOUNT),
    "702": ("RFC Emisor no registrado en la cuenta", ACCOUNT),
    "703": ("Usuario Suspendido", ACCOUNT),
    "704": ("Error con la contraseña de la llave Privada", ACCOUNT),
    "705": ("XML Estructura inválida", PERMANENT),
    "706": ("Socio de Negocios Inválido", ACCOUNT),
    "707": ("Timbre Existente", PERMANENT),  # the XML sent already carries a TFD
    "708": ("No se pudo conectar al SAT", TRANSIENT),
    "709": ("SelloSat no pudo ser creado", TRANSIENT),
    "710": ("Las cantidades no concuerdan", PERMANENT),
    "711": ("Error con el certificado", PERMANENT),
    "712": ("El atributo noCertificado no corresponde al certificado", PERMANENT),
    "713": ("RFC Emisor no corresponde a la cuenta", ACCOUNT),
    "714": ("Límite mensual alcanzado", ACCOUNT),
    "715": ("Error al crear XML de consulta Sector Primario", TRANSIENT),
    "716": ("Firma Inválida - Consulta Sector Primario", PERMANENT),
    "717": ("Error al generar la firma del XML", TRANSIENT),
    "718": ("Timbres agotados, por favor, contacte a su proveedor.", ACCOUNT),
    "719": ("RFC del Emisor no corresponde al noCertificado", ACCOUNT),
    "720": ("RFC del Emisor no tiene Certificado Activo", ACCOUNT),
    "721": ("RFC emisor del comprobante no corresponde al de la cuenta.", ACCOUNT),
    "722": ("Json no valido", PERMANENT),
    "723": ("Error en la generacion del sello", TRANSIENT),
    "724": ("CSV formato no valido", PERMANENT),
    "725": ("Error en la generacion del reporte", TRANSIENT),
    "726": ("Prefijo no permitido, por favor verifique la documentación.", PERMANENT),
    "727": ("El archivo enviado no es base64 o no se pudieron obtener los bytes.", PERMANENT),
    "728": ("El archivo enviado no corresponde a un archivo zip o gzip.", PERMANENT),
    "729": ("El archivo zip no contiene un solo archivo.", PERMANENT),
    "730": ("Id de proceso no encontrado.", PERMANENT),
    "731": ("El id de proceso se encuentra en ejecución.", TRANSIENT),
    "732": ("El id de proceso excedió el tiempo límite de ejecución (TIMEOUT).", TRANSIENT),
    "733": ("Hubo un error con el id de proceso (FAILURE).", TRANSIENT),
    "734": ("El parametro ctype debe ser zip o gzip.", PERMANENT),
    "735": ("Error no controlado.", TRANSIENT),
    "736": ("Folio Duplicado.", PERMANENT),
    "738": ("Errores con schemaLocations, namespaces y prefijos", PERMANENT),
    "740": ("Error Firma de Manifiesto", ACCOUNT),
    "798": (
        "Ya existe una solicitud previa, para volver a mandar la petición esperar 72 horas",
        PERMANENT,
    ),
    "799": ("Excedieron el límite de las 5 peticiones.", PERMANENT),
    # --- accept/reject answers (per UUID) ----------------------------------------------------
    "1000": ("Se recibió la respuesta de la petición de forma exitosa", OK),
    "1001": ("No existen peticiones de cancelación en espera de respuesta para el UUID", PERMANENT),
    "1002": ("Ya se recibió una respuesta para la petición de cancelación del UUID", PERMANENT),
    "1003": ("El sello no corresponde al RFC receptor", PERMANENT),
    "1004": ("Existen más de una petición de cancelación para el mismo UUID", PERMANENT),
    "1005": ("El UUID es nulo o no posee el formato correcto", PERMANENT),
    "1006": ("Se rebasó el número máximo de solicitudes permitidas", TRANSIENT),
    # --- retentions cancellation -------------------------------------------------------------
    "1201": ("UUID Cancelado exitosamente", OK),
    "1205": ("UUID No existe", TRANSIENT),  # SAT lag right after stamping
    "1308": ("Certificado revocado o caduco", TRANSIENT),  # a demo-environment problem
    # --- SAT validation matrix: receptor fiscal data (CFDI 4.0) -----------------------------
    "CFDI40143": (
        "Este RFC del receptor no existe en la lista de RFC inscritos no cancelados del SAT.",
        FISCAL_DATA,
    ),
    "CFDI40144": (
        "El campo Nombre del receptor, debe encontrarse en la lista de RFC inscritos no "
        "cancelados en el SAT.",
        FISCAL_DATA,
    ),
    "CFDI40145": (
        "El campo Nombre del receptor, debe pertenecer al nombre asociado al RFC registrado "
        "en el campo Rfc del Receptor.",
        FISCAL_DATA,
    ),
    "CFDI40146": ('El campo RFC del receptor debe contener el valor "XAXX010101000".', FISCAL_DATA),
    "CFDI40147": (
        "El campo DomicilioFiscalReceptor del receptor, debe encontrarse en la lista de RFC "
        "inscritos no cancelados en el SAT.",
        FISCAL_DATA,
    ),
    "CFDI40148": (
        "El campo DomicilioFiscalReceptor del receptor, debe pertenecer al nombre asociado "
        "al RFC registrado en el campo Rfc del Receptor.",
        FISCAL_DATA,
    ),
    "CFDI40149": (
        "El campo DomicilioFiscalReceptor, no es igual al valor del campo LugarExpedicion.",
        FISCAL_DATA,
    ),
    "CFDI40157": (
        "El campo RegimenFiscalR, no contiene un valor del catálogo c_RegimenFiscal.",
        FISCAL_DATA,
    ),
    "CFDI40158": (
        "La clave del campo RegimenFiscalR debe corresponder con el tipo de persona (física "
        "o moral).",
        FISCAL_DATA,
    ),
    "CFDI40159": (
        "La clave del campo RegimenFiscalR no corresponde de acuerdo al RFC del receptor.",
        FISCAL_DATA,
    ),
    "CFDI40160": ("El campo UsoCFDI, no contiene un valor del catálogo c_UsoCFDI.", FISCAL_DATA),
    "CFDI40161": (
        "La clave del campo UsoCFDI debe corresponder con el tipo de persona (física o moral) "
        "y el régimen correspondiente conforme al catálogo c_UsoCFDI.",
        FISCAL_DATA,
    ),
}

# Receptor fiscal data (RFC, Nombre, DomicilioFiscalReceptor, residence, RegimenFiscalReceptor,
# UsoCFDI) in SAT's CFDI 4.0 matrix: every code in this range, listed above or not.
FISCAL_DATA_RANGE = (40143, 40161)

# The same code means something else in a cancellation answer (CodEstatus / EstatusUUID).
CANCEL_OVERRIDES: dict[str, str] = {
    "300": TRANSIENT,  # "SAT authentication service fail" (Finkok tickets #17743, #41594)
    "305": TRANSIENT,  # seen right after stamping; retried by reference clients
}

# Texts Finkok sends instead of a code (cancel CodEstatus, utilities/registration error).
TEXTS: tuple[tuple[str, str], ...] = (
    ("invalid username or password", ACCOUNT),
    ("el usuario o contraseña son inválidos", ACCOUNT),
    ("no encontrado", TRANSIENT),  # "UUID: <uuid> No Encontrado": SAT lag on fresh CFDI
    ("already en buffercancellation", TRANSIENT),
    ("no_cancelable", PERMANENT),
)
