"""The export layouts of other systems that are recognised without configuration (SPEC 9), as data.

Each :class:`Layout` says how one system writes contacts: which of its columns are which
fields, in the order of preference the system implies (mobile before landline, primary
address before the others), which columns together identify its header, and how it writes
the file (encoding, delimiter, line endings, lines before the header).

Column names are written exactly as the system writes them; they are compared the way
SPEC 3 compares aliases (case-, space-, ``_``- and ``-``-insensitively). ``patterns`` are
regular expressions matched with ``re.fullmatch(pattern, column, re.IGNORECASE)`` against
the column name as written, for numbered or labelled columns (``E-mail 3 - Value``,
``Person - Phone - Assistant``); a column listed in ``columns`` keeps its place there, the
others a pattern matches follow in the file's column order.

``source`` cites where the header comes from: a public repository file (``owner/repo:path``)
holding a real export, or the documentation page; ``reconstructed:`` marks a header built
from the closest documented evidence where no verbatim export could be found
(``docs/exports.md`` lists them). Every sample in ``tests/data/exports/<name>.csv`` is
written the way its layout says, and ``tests/data/exports/EXPECTED.json`` holds what
importing it must give.

Targets: ``external_id``, ``email``, ``phone``, ``first_name``, ``last_name``, ``full_name``
(split at the last space when no first/last name is given), ``timezone``, ``tags``,
``unsubscribed`` (an opt-out column), ``subscribed`` (a consent column: its truth means *not*
unsubscribed) and ``country`` (read for the phone region; the value also stays in
attributes). Columns not listed stay in attributes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from truagents_import.fields.layout import Layout
from truagents_import.hookspecs import hookimpl

__all__ = ["BUILTIN_LAYOUTS", "register_layouts"]

# Outlook's phone columns, voice numbers of the contact only (faxes, pagers, ISDN, telex and the
# assistant's or company switchboard's numbers stay in attributes), mobile first.
_OUTLOOK_PHONES: Final[tuple[tuple[str, str], ...]] = (
    ("Mobile Phone", "phone"),
    ("Primary Phone", "phone"),
    ("Business Phone", "phone"),
    ("Business Phone 2", "phone"),
    ("Home Phone", "phone"),
    ("Home Phone 2", "phone"),
    ("Other Phone", "phone"),
    ("Car Phone", "phone"),
    ("Radio Phone", "phone"),
    ("Callback", "phone"),
)

_OUTLOOK_COUNTRIES: Final[tuple[tuple[str, str], ...]] = (
    ("Home Country/Region", "country"),
    ("Business Country/Region", "country"),
    ("Other Country/Region", "country"),
)

_OUTLOOK_EMAILS: Final[tuple[tuple[str, str], ...]] = (
    ("E-mail Address", "email"),
    ("E-mail 2 Address", "email"),
    ("E-mail 3 Address", "email"),
)

_GOOGLE_PATTERNS: Final[tuple[tuple[str, str], ...]] = (
    (r"E-mail \d+ - Value", "email"),
    (r"Phone \d+ - Value", "phone"),
    (r"Address \d+ - Country", "country"),
)

BUILTIN_LAYOUTS: Final[tuple[Layout, ...]] = (
    Layout(
        name="google_contacts",
        title="Google Contacts export",
        source=(
            "reconstructed: the fixed columns (First Name … Labels) and the numbered groups as public test "
            "fixtures of real contacts.google.com exports quote them (their repositories are not identifiable "
            "through the index); groups follow 'E-mail N - Label/Value', 'Phone N - Label/Value', "
            "'Address N - …'"
        ),
        columns=(
            ("First Name", "first_name"),
            ("Last Name", "last_name"),
            ("E-mail 1 - Value", "email"),
            ("E-mail 2 - Value", "email"),
            ("Phone 1 - Value", "phone"),
            ("Phone 2 - Value", "phone"),
            ("Labels", "tags"),
            ("Address 1 - Country", "country"),
        ),
        patterns=_GOOGLE_PATTERNS,
        distinctive=("Phonetic First Name", "File As", "Labels"),
        encoding="utf-8",
    ),
    Layout(
        name="google_csv_legacy",
        title="Google Contacts export (legacy Google CSV)",
        source=(
            "Baneeishaque/GContacts:google.csv (a real legacy export); UTF-16: andrewychoi/fix_contacts:"
            "fix_contacts.py strips its NUL bytes; header also in owncloud-archive/contacts#827 and #817"
        ),
        columns=(
            ("Given Name", "first_name"),
            ("Family Name", "last_name"),
            ("Name", "full_name"),
            ("E-mail 1 - Value", "email"),
            ("E-mail 2 - Value", "email"),
            ("Phone 1 - Value", "phone"),
            ("Phone 2 - Value", "phone"),
            ("Group Membership", "tags"),
            ("Address 1 - Country", "country"),
        ),
        patterns=_GOOGLE_PATTERNS,
        distinctive=("Given Name", "Family Name", "Yomi Name", "Group Membership"),
        encoding="utf-16",
    ),
    Layout(
        name="outlook",
        title="Outlook export (desktop Import/Export wizard)",
        source=(
            "https://support.microsoft.com/en-us/office/create-or-edit-csv-files-to-import-into-outlook-"
            "4518d70d-8fe9-46ad-94fa-1494247193c7 (the column set Outlook writes; the same 92 quoted columns "
            "appear verbatim in public code)"
        ),
        columns=(
            ("First Name", "first_name"),
            ("Last Name", "last_name"),
            *_OUTLOOK_EMAILS,
            *_OUTLOOK_PHONES,
            ("Categories", "tags"),
            *_OUTLOOK_COUNTRIES,
        ),
        distinctive=("E-mail Address", "E-mail Type", "E-mail Display Name"),
        encoding="cp1252",
        line_ending="\r\n",
    ),
    Layout(
        name="outlook_web",
        title="Outlook.com / Microsoft 365 web export",
        source=(
            "reconstructed: header quoted in public code as the default outlook.live.com export (repository "
            "not identifiable); column positions agree with https://gist.github.com/itaysk/"
            "4e1091bacb2b9d44d37a9b9274217576 (Outlook.com CSV to VCF)"
        ),
        columns=(
            ("First Name", "first_name"),
            ("Last Name", "last_name"),
            *_OUTLOOK_EMAILS,
            *_OUTLOOK_PHONES,
            *_OUTLOOK_COUNTRIES,
        ),
        distinctive=("Given Yomi", "Surname Yomi", "IMAddress"),
        encoding="utf-8",
    ),
    Layout(
        name="mailchimp",
        title="Mailchimp audience export",
        source=(
            "buren/honey_format:spec/honey_format/csv_spec.rb (a Mailchimp export header); the default "
            "audience's Address/Phone Number/Birthday merge fields and TAGS as public code reads them"
        ),
        columns=(
            ("Email Address", "email"),
            ("First Name", "first_name"),
            ("Last Name", "last_name"),
            ("Phone Number", "phone"),
            ("TAGS", "tags"),
            ("TIMEZONE", "timezone"),
            ("CC", "country"),
        ),
        distinctive=("Email Address", "MEMBER_RATING", "LEID", "EUID"),
        encoding="utf-8",
    ),
    Layout(
        name="hubspot",
        title="HubSpot contacts export",
        source=(
            "Shaftdog/Salesmod:hubspot_contacts.csv (a real export); 'Unsubscribed from all email' is the "
            "label of hs_email_optout"
        ),
        columns=(
            ("Record ID", "external_id"),
            ("Record ID - Contact", "external_id"),
            ("First Name", "first_name"),
            ("Last Name", "last_name"),
            ("Email", "email"),
            ("Mobile Phone Number", "phone"),
            ("Phone Number", "phone"),
            ("Country/Region", "country"),
            ("Unsubscribed from all email", "unsubscribed"),
        ),
        distinctive=("Contact owner", "Create Date"),
        encoding="utf-8",
    ),
    Layout(
        name="salesforce_report",
        title="Salesforce report export",
        source=(
            "reconstructed: field labels from https://developer.salesforce.com/docs/platform/field-reference/"
            "references/field-reference/salesforce-field-reference-contact.html as a Contacts report writes them"
        ),
        columns=(
            ("Contact ID", "external_id"),
            ("First Name", "first_name"),
            ("Last Name", "last_name"),
            ("Email", "email"),
            ("Mobile", "phone"),
            ("Mobile Phone", "phone"),
            ("Phone", "phone"),
            ("Business Phone", "phone"),
            ("Home Phone", "phone"),
            ("Other Phone", "phone"),
            ("Mailing Country", "country"),
            ("Email Opt Out", "unsubscribed"),
        ),
        distinctive=("Contact ID", "Account Name", "Email Opt Out"),
        encoding="utf-8",
    ),
    Layout(
        name="salesforce_api",
        title="Salesforce Data Loader / API export",
        source=(
            "https://developer.salesforce.com/docs/atlas.en-us.object_reference.meta/object_reference/"
            "sforce_api_objects_contact.htm (Contact field API names)"
        ),
        columns=(
            ("Id", "external_id"),
            ("FirstName", "first_name"),
            ("LastName", "last_name"),
            ("Email", "email"),
            ("MobilePhone", "phone"),
            ("Phone", "phone"),
            ("HomePhone", "phone"),
            ("OtherPhone", "phone"),
            ("MailingCountry", "country"),
            ("MailingCountryCode", "country"),
            ("HasOptedOutOfEmail", "unsubscribed"),
        ),
        distinctive=("Id", "HasOptedOutOfEmail"),
        encoding="utf-8",
    ),
    Layout(
        name="shopify",
        title="Shopify customers export",
        source="thecyclingcompany/tourdelcafe-web:customers_export.csv (a real export)",
        columns=(
            ("Customer ID", "external_id"),
            ("First Name", "first_name"),
            ("Last Name", "last_name"),
            ("Email", "email"),
            ("Phone", "phone"),
            ("Default Address Phone", "phone"),
            ("Default Address Country Code", "country"),
            ("Accepts Email Marketing", "subscribed"),
            ("Tags", "tags"),
        ),
        distinctive=("Customer ID", "Accepts Email Marketing", "Default Address Country Code"),
        encoding="utf-8",
    ),
    Layout(
        name="stripe",
        title="Stripe customers export",
        source="Liam-Dupeyron/AnswersAi_data_science:unified_customers.csv (a real export)",
        columns=(
            ("id", "external_id"),
            ("Email", "email"),
            ("Name", "full_name"),
            ("Card Address Country", "country"),
        ),
        distinctive=("id", "Created (UTC)", "Delinquent"),
        encoding="utf-8",
    ),
    Layout(
        name="zoho_crm",
        title="Zoho CRM contacts export",
        source=(
            "reconstructed: Contacts field labels from https://www.zoho.com/crm/help/api/modules-fields.html, "
            "'Record Id' first and every value quoted as public fixtures of Zoho exports show"
        ),
        columns=(
            ("Record Id", "external_id"),
            ("First Name", "first_name"),
            ("Last Name", "last_name"),
            ("Email", "email"),
            ("Secondary Email", "email"),
            ("Mobile", "phone"),
            ("Phone", "phone"),
            ("Home Phone", "phone"),
            ("Other Phone", "phone"),
            ("Mailing Country", "country"),
            ("Email Opt Out", "unsubscribed"),
            ("Tag", "tags"),
        ),
        distinctive=("Record Id", "Contact Owner", "Secondary Email", "Created Time"),
        encoding="utf-8",
    ),
    Layout(
        name="pipedrive",
        title="Pipedrive people export",
        source=(
            "reconstructed: the 'Person - ' columns (Person - Email - Work/Home/Other, Person - Phone - "
            "Work/Home/Mobile/Other, Person - Label, Person - Marketing status) as public code reading "
            "Pipedrive people exports names them"
        ),
        columns=(
            ("Person - ID", "external_id"),
            ("Person - First name", "first_name"),
            ("Person - Last name", "last_name"),
            ("Person - Name", "full_name"),
            ("Person - Email - Work", "email"),
            ("Person - Email - Home", "email"),
            ("Person - Email - Other", "email"),
            ("Person - Phone - Mobile", "phone"),
            ("Person - Phone - Work", "phone"),
            ("Person - Phone - Home", "phone"),
            ("Person - Phone - Other", "phone"),
            ("Person - Label", "tags"),
        ),
        patterns=(
            (r"Person - Email(?: - .+)?", "email"),
            (r"Person - Phone(?: - .+)?", "phone"),
        ),
        distinctive=("Person - Name", "Person - Organization", "Person - Owner"),
        encoding="utf-8",
    ),
    Layout(
        name="linkedin_connections",
        title="LinkedIn Connections export",
        source=(
            "chrhartm/linkedin-to-notion-crm:Connections.csv and JasonToups/linkedin-export-sorting:"
            "Connections.csv (real exports, with their 'Notes:' preamble)"
        ),
        columns=(
            # Most connections hide their email address: the profile URL is the one identifier
            # every row has, so it is the contact's external_id (an email, when shown, is kept too).
            ("URL", "external_id"),
            ("First Name", "first_name"),
            ("Last Name", "last_name"),
            ("Email Address", "email"),
        ),
        distinctive=("First Name", "URL", "Connected On"),
        header_line="First Name",
        encoding="utf-8",
    ),
    Layout(
        name="brevo",
        title="Brevo contacts export",
        source=(
            "reconstructed: attribute names (EMAIL, FIRSTNAME, LASTNAME, SMS, EXT_ID, LANDLINE_NUMBER; NOM/"
            "PRENOM in French accounts) and the blocklist flags from https://developers.brevo.com/reference/"
            "request-contact-export and https://help.brevo.com/hc/fr/articles/5310065850642; ';' delimited"
        ),
        columns=(
            ("EXT_ID", "external_id"),
            ("EMAIL", "email"),
            ("FIRSTNAME", "first_name"),
            ("PRENOM", "first_name"),
            ("LASTNAME", "last_name"),
            ("NOM", "last_name"),
            ("SMS", "phone"),
            ("WHATSAPP", "phone"),
            ("LANDLINE_NUMBER", "phone"),
            ("EMAIL_BLACKLISTED", "unsubscribed"),
        ),
        distinctive=("EMAIL", "EMAIL_BLACKLISTED", "SMS_BLACKLISTED"),
        encoding="utf-8",
        delimiter=";",
    ),
    Layout(
        name="klaviyo",
        title="Klaviyo profiles export",
        source=(
            "reconstructed: Klaviyo profile properties (Email, Phone Number, First Name, Last Name, Country, "
            "Email/SMS Marketing Consent) as a list or segment export names them; no verbatim export found"
        ),
        columns=(
            ("Email", "email"),
            ("Phone Number", "phone"),
            ("First Name", "first_name"),
            ("Last Name", "last_name"),
            ("Country", "country"),
            ("Email Marketing Consent", "subscribed"),
        ),
        distinctive=("Email Marketing Consent", "SMS Marketing Consent"),
        encoding="utf-8",
    ),
    Layout(
        name="activecampaign",
        title="ActiveCampaign contacts export",
        source=(
            "reconstructed: ActiveCampaign contact fields (Contact ID, Email, First Name, Last Name, Phone, "
            "Account, Tags, Date Created/Updated); no verbatim export found"
        ),
        columns=(
            ("Contact ID", "external_id"),
            ("Email", "email"),
            ("First Name", "first_name"),
            ("Last Name", "last_name"),
            ("Phone", "phone"),
            ("Tags", "tags"),
        ),
        distinctive=("Contact ID", "Account", "Date Updated"),
        encoding="utf-8",
    ),
    Layout(
        name="constant_contact",
        title="Constant Contact contacts export",
        source=(
            "reconstructed: the columns public code reads from Constant Contact exports (Email address, First "
            "name, Last name, Phone - home, Company, Job title, Email status, Email permission status, Tags, "
            "Email Lists, Country - Home, Created At, Updated At)"
        ),
        columns=(
            ("Email address", "email"),
            ("First name", "first_name"),
            ("Last name", "last_name"),
            ("Phone - mobile", "phone"),
            ("Phone - work", "phone"),
            ("Phone - home", "phone"),
            ("Country - Home", "country"),
            ("Tags", "tags"),
        ),
        distinctive=("Email address", "Email status", "Email permission status"),
        encoding="utf-8",
    ),
    Layout(
        name="intercom",
        title="Intercom people export",
        source=(
            "reconstructed: Intercom's contact attributes as its people export labels them (Name, Email, "
            "Phone, User ID, Signed up, Last seen, Unsubscribed from Emails, Tags); no verbatim export found"
        ),
        columns=(
            ("User ID", "external_id"),
            ("Email", "email"),
            ("Phone", "phone"),
            ("Name", "full_name"),
            ("Country", "country"),
            ("Tags", "tags"),
            ("Unsubscribed from Emails", "unsubscribed"),
        ),
        distinctive=("User ID", "Last seen", "Unsubscribed from Emails"),
        encoding="utf-8",
    ),
)


@hookimpl
def register_layouts(register: Callable[[Layout], None]) -> None:
    """Offer the layouts of the systems SPEC 9 names (see docs/exports.md)."""
    for layout in BUILTIN_LAYOUTS:
        register(layout)
