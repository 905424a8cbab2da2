//! Property tables of `microsoft.graph.user` and `microsoft.graph.group`, and `$select` parsing.
//!
//! Properties are stored by their index in these tables (a `u8`), so an object costs a few
//! bytes per property and a selection is a 256-bit set.

/// The two resource types the simulator tracks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectType {
    /// `microsoft.graph.user` (`/users/delta`).
    User,
    /// `microsoft.graph.group` (`/groups/delta`).
    Group,
}

/// Trackable user properties (`id` is implicit and never stored as a property).
const USER_PROPS: &[&str] = &[
    "displayName",
    "userPrincipalName",
    "mail",
    "accountEnabled",
    "userType",
    "givenName",
    "surname",
    "jobTitle",
    "department",
    "officeLocation",
    "mobilePhone",
    "businessPhones",
    "preferredLanguage",
    "employeeId",
    "employeeType",
    "companyName",
    "city",
    "country",
    "state",
    "streetAddress",
    "postalCode",
    "usageLocation",
    "mailNickname",
    "otherMails",
    "proxyAddresses",
    "imAddresses",
    "faxNumber",
    "ageGroup",
    "createdDateTime",
    "creationType",
    "deletedDateTime",
    "employeeHireDate",
    "externalUserState",
    "identities",
    "lastPasswordChangeDateTime",
    "passwordPolicies",
    "showInAddressList",
    "onPremisesImmutableId",
    "onPremisesSyncEnabled",
    "onPremisesSamAccountName",
    "onPremisesUserPrincipalName",
    "onPremisesDistinguishedName",
    "onPremisesDomainName",
    "onPremisesSecurityIdentifier",
    "onPremisesLastSyncDateTime",
];

/// What users/delta returns when the client sends no `$select` (Graph's default user set).
const USER_DEFAULT: &[&str] = &[
    "businessPhones",
    "displayName",
    "givenName",
    "jobTitle",
    "mail",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "surname",
    "userPrincipalName",
];

/// Stored outside the directory: selecting them answers 501 (protocol notes 3.2).
const USER_UNTRACKABLE: &[&str] = &[
    "aboutMe",
    "birthday",
    "hireDate",
    "interests",
    "mySite",
    "pastProjects",
    "preferredName",
    "responsibilities",
    "schools",
    "skills",
    "mailboxSettings",
];

const GROUP_PROPS: &[&str] = &[
    "displayName",
    "description",
    "mail",
    "mailEnabled",
    "mailNickname",
    "securityEnabled",
    "groupTypes",
    "visibility",
    "classification",
    "createdDateTime",
    "deletedDateTime",
    "expirationDateTime",
    "isAssignableToRole",
    "membershipRule",
    "membershipRuleProcessingState",
    "onPremisesSyncEnabled",
    "onPremisesSecurityIdentifier",
    "onPremisesSamAccountName",
    "onPremisesDomainName",
    "onPremisesLastSyncDateTime",
    "preferredDataLocation",
    "preferredLanguage",
    "proxyAddresses",
    "renewedDateTime",
    "resourceBehaviorOptions",
    "resourceProvisioningOptions",
    "securityIdentifier",
    "theme",
    "uniqueName",
];

/// Exchange-backed group properties: not trackable by delta.
const GROUP_UNTRACKABLE: &[&str] = &[
    "allowExternalSenders",
    "autoSubscribeNewMembers",
    "hideFromAddressLists",
    "hideFromOutlookClients",
    "isSubscribedByMail",
    "unseenCount",
];

impl ObjectType {
    /// The stored (trackable) property names of this type, indexed by property number.
    pub fn props(self) -> &'static [&'static str] {
        match self {
            ObjectType::User => USER_PROPS,
            ObjectType::Group => GROUP_PROPS,
        }
    }

    fn default_select(self) -> &'static [&'static str] {
        match self {
            ObjectType::User => USER_DEFAULT,
            // groups/delta without $select returns its default set: all plain properties.
            ObjectType::Group => GROUP_PROPS,
        }
    }

    fn untrackable(self) -> &'static [&'static str] {
        match self {
            ObjectType::User => USER_UNTRACKABLE,
            ObjectType::Group => GROUP_UNTRACKABLE,
        }
    }

    /// The OData type name used in error messages, e.g. `microsoft.graph.user`.
    pub fn graph_type(self) -> &'static str {
        match self {
            ObjectType::User => "microsoft.graph.user",
            ObjectType::Group => "microsoft.graph.group",
        }
    }

    /// The URL segment of the collection: `users` or `groups`.
    pub fn segment(self) -> &'static str {
        match self {
            ObjectType::User => "users",
            ObjectType::Group => "groups",
        }
    }

    /// Property number of `name` (case-insensitive, as Graph matches `$select`).
    pub fn prop_index(self, name: &str) -> Option<u8> {
        let index = self
            .props()
            .iter()
            .position(|p| p.eq_ignore_ascii_case(name))?;
        u8::try_from(index).ok()
    }

    /// Name of property number `index`.
    pub fn prop_name(self, index: u8) -> &'static str {
        self.props()[usize::from(index)]
    }
}

/// A parsed `$select`: which properties and relationships a round carries.
#[derive(Clone, Debug)]
pub struct Selection {
    bits: [u64; 4],
    /// `members` selected (groups): pages carry `members@delta`.
    pub members: bool,
    /// `manager` selected (users): pages carry `manager@delta`.
    pub manager: bool,
    /// The `$select` text as the client sent it (names canonicalised), for
    /// `@odata.context` and the 410 `Location`; `None` when no `$select` was sent.
    pub text: Option<String>,
}

/// Why a `$select` was refused.
#[derive(Debug)]
pub enum SelectError {
    /// No such property: 400 `Request_BadRequest`.
    Unknown(String),
    /// Property exists but is stored outside the directory: 501 `NotImplemented`.
    Untrackable(String),
}

impl Selection {
    /// Parses `$select` for `ty`; `None` gives the type's default set (plus members for groups).
    pub fn parse(ty: ObjectType, select: Option<&str>) -> Result<Selection, SelectError> {
        let Some(text) = select else {
            return Ok(Self::default_for(ty));
        };
        let mut selection = Selection {
            bits: [0; 4],
            members: false,
            manager: false,
            text: None,
        };
        let mut canonical = Vec::new();
        for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            canonical.push(selection.add(ty, name)?);
        }
        selection.text = Some(canonical.join(","));
        Ok(selection)
    }

    fn default_for(ty: ObjectType) -> Selection {
        let mut selection = Selection {
            bits: [0; 4],
            members: ty == ObjectType::Group,
            manager: false,
            text: None,
        };
        for name in ty.default_select() {
            if let Some(index) = ty.prop_index(name) {
                selection.set(index);
            }
        }
        selection
    }

    /// Adds one name; returns its canonical spelling.
    fn add(&mut self, ty: ObjectType, name: &str) -> Result<&'static str, SelectError> {
        if name.eq_ignore_ascii_case("id") {
            return Ok("id");
        }
        if let Some(index) = ty.prop_index(name) {
            self.set(index);
            return Ok(ty.prop_name(index));
        }
        match (ty, name.to_ascii_lowercase().as_str()) {
            (ObjectType::Group, "members") => {
                self.members = true;
                return Ok("members");
            }
            // Owners are accepted (Graph tracks them) but the simulator models none.
            (ObjectType::Group, "owners") => return Ok("owners"),
            (ObjectType::User, "manager") => {
                self.manager = true;
                return Ok("manager");
            }
            _ => {}
        }
        if let Some(known) = ty
            .untrackable()
            .iter()
            .find(|u| u.eq_ignore_ascii_case(name))
        {
            return Err(SelectError::Untrackable((*known).to_string()));
        }
        Err(SelectError::Unknown(name.to_string()))
    }

    fn set(&mut self, index: u8) {
        self.bits[usize::from(index / 64)] |= 1 << (index % 64);
    }

    /// Whether property number `index` is selected.
    pub fn has(&self, index: u8) -> bool {
        self.bits[usize::from(index / 64)] & (1 << (index % 64)) != 0
    }
}
